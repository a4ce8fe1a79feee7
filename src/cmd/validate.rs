//! `meshd validate -f FILE|DIR`: offline check of Mesh, traffic and security resources and the Kubernetes
//! documents a file-fed mesh reads (SPEC §2), like `istioctl analyze`. Every problem is one line
//! `FILE: KIND NS/NAME: FIELD: problem` on stdout; exit 1 when there is any, 0 otherwise.
//!
//! The checks are `meshd_api::validate`'s per-object ones, then the control plane's checks between
//! resources ([`super::validate_refs`]: an unknown host, subset or port, two resources claiming one
//! host) within each `-f`: a FILE resolves references only inside itself, a DIR across its files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use meshd_api::validate::{Checked, Outcome, check_documents};

use super::validate_refs::Scope;

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
    /// DNS domain of the cluster's Services (short names resolve to `NAME.NS.svc.DOMAIN`).
    #[arg(long, env = "MESHD_CLUSTER_DOMAIN", default_value = meshd_api::names::DEFAULT_CLUSTER_DOMAIN)]
    cluster_domain: String,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    // Each -f is one scope of reference checks: its files, sorted.
    let (mut scopes, mut problems) = (Vec::new(), 0usize);
    for path in &args.filenames {
        let mut files = Vec::new();
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
        files.sort();
        scopes.push(files);
    }
    // A file in two scopes is reported once; a reference problem found in two scopes too.
    let (mut seen, mut printed) = (BTreeSet::new(), BTreeSet::new());
    let mut documents = 0usize;
    let domain = args.cluster_domain.as_str();
    for files in &scopes {
        let mut scope = Scope::default();
        for file in files {
            let once = seen.insert(file.clone());
            let shown = file.display();
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    if once {
                        println!("{shown}: cannot read: {e}");
                        problems += 1;
                    }
                    continue;
                }
            };
            for checked in check_documents(&text) {
                if once {
                    documents += 1;
                    problems += print_outcome(file, &checked);
                }
                if let Outcome::Object {
                    namespace,
                    name,
                    object: Some(object),
                    errors,
                    ..
                } = &checked.outcome
                {
                    scope.add(file, namespace.as_deref(), name, object, errors, domain);
                }
            }
        }
        for line in scope.problems(domain) {
            if printed.insert(line.clone()) {
                println!("{line}");
                problems += 1;
            }
        }
    }
    let files = seen.len();
    eprintln!(
        "meshd validate: {problems} problem{} in {documents} document{} ({files} file{})",
        plural(problems),
        plural(documents),
        plural(files)
    );
    Ok(if problems > 0 { 1 } else { 0 })
}

/// Prints one document's object-level problems; how many.
fn print_outcome(file: &Path, checked: &Checked) -> usize {
    let shown = file.display();
    match &checked.outcome {
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
                name.clone()
            };
            let object = match namespace {
                Some(ns) => format!("{kind} {ns}/{name}"),
                None => format!("{kind} {name}"),
            };
            for e in errors {
                println!("{shown}: {object}: {e}");
            }
            errors.len()
        }
        Outcome::Unreadable { problem } => {
            println!("{shown}: document {}: {problem}", checked.number);
            1
        }
        Outcome::Skipped { kind } => {
            eprintln!(
                "{shown}: document {}: kind {kind} is not read by meshd; skipped",
                checked.number
            );
            0
        }
    }
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
