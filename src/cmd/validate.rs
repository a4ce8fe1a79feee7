//! `meshd validate -f FILE|DIR`: offline check of Mesh, traffic and security resources and the Kubernetes
//! documents a file-fed mesh reads (SPEC §2), like `istioctl analyze`. Every problem is one line
//! `FILE: KIND NS/NAME: FIELD: problem` on stdout; exit 1 when there is any, 0 otherwise.
//!
//! The checks are `meshd_api::validate`'s per-object ones; references between resources (an unknown
//! host, subset, gateway or credential) are checked once the mesh index exists (see
//! `meshd_api::validate::References`).

use std::path::{Path, PathBuf};

use meshd_api::validate::{Outcome, check_documents};

/// Exit code for bad flags (EX_USAGE).
const EXIT_USAGE: i32 = 64;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A YAML/JSON file (multi-document) or a directory, read recursively (`*.yaml`, `*.yml`, `*.json`);
    /// repeat for several.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR",
        env = "MESHD_FILENAME",
        required = true
    )]
    filenames: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let (mut files, mut problems) = (Vec::new(), 0usize);
    for path in &args.filenames {
        if path.is_dir() {
            problems += list_files(path, &mut files);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            eprintln!(
                "meshd: --filename {}: no such file or directory",
                path.display()
            );
            return Ok(EXIT_USAGE);
        }
    }
    files.sort();
    files.dedup();
    let mut documents = 0usize;
    for file in &files {
        let shown = file.display();
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                println!("{shown}: cannot read: {e}");
                problems += 1;
                continue;
            }
        };
        for checked in check_documents(&text) {
            documents += 1;
            match checked.outcome {
                Outcome::Object {
                    kind,
                    namespace,
                    name,
                    errors,
                    ..
                } => {
                    let name = if name.is_empty() {
                        format!("(document {})", checked.number)
                    } else {
                        name
                    };
                    let object = match namespace {
                        Some(ns) => format!("{kind} {ns}/{name}"),
                        None => format!("{kind} {name}"),
                    };
                    for e in &errors {
                        println!("{shown}: {object}: {e}");
                    }
                    problems += errors.len();
                }
                Outcome::Unreadable { problem } => {
                    println!("{shown}: document {}: {problem}", checked.number);
                    problems += 1;
                }
                Outcome::Skipped { kind } => {
                    eprintln!(
                        "{shown}: document {}: kind {kind} is not read by meshd; skipped",
                        checked.number
                    );
                }
            }
        }
    }
    let files = files.len();
    eprintln!(
        "meshd validate: {problems} problem{} in {documents} document{} ({files} file{})",
        plural(problems),
        plural(documents),
        plural(files)
    );
    Ok(if problems > 0 { 1 } else { 0 })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The files the file-fed control plane reads: `*.yaml`, `*.yml`, `*.json`, hidden ones left out.
/// Returns how many directories could not be read (each printed as a problem).
fn list_files(dir: &Path, out: &mut Vec<PathBuf>) -> usize {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            println!("{}: cannot read directory: {e}", dir.display());
            return 1;
        }
    };
    let mut unreadable = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            unreadable += list_files(&path, out);
        } else if [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            out.push(path);
        }
    }
    unreadable
}
