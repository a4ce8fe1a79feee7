//! The git commit `meshd version` prints, read from `.git` itself (no `git` process), so `cargo build`
//! and `make build` give the build the same input and neither relinks after the other. The build reruns
//! only when HEAD or the current branch moves. A build without `.git` (the Docker build context) takes
//! `MESHD_GIT_COMMIT` from the environment (the Dockerfile's `GIT_COMMIT` build argument).

use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=MESHD_GIT_COMMIT");
    let from_env = std::env::var("MESHD_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = from_env
        .or_else(|| head_commit(&manifest.join(".git")))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MESHD_BUILD_COMMIT={commit}");
}

/// The short commit of HEAD, printing a rerun line for each file it read.
fn head_commit(dot_git: &Path) -> Option<String> {
    let git_dir = if dot_git.is_file() {
        // A worktree: `.git` is a file naming the real git directory.
        println!("cargo:rerun-if-changed={}", dot_git.display());
        let text = fs::read_to_string(dot_git).ok()?;
        PathBuf::from(text.strip_prefix("gitdir:")?.trim())
    } else {
        dot_git.to_path_buf()
    };
    let common = match fs::read_to_string(git_dir.join("commondir")) {
        Ok(rel) => git_dir.join(rel.trim()),
        Err(_) => git_dir.clone(),
    };
    let head_path = git_dir.join("HEAD");
    let head = fs::read_to_string(&head_path).ok()?;
    println!("cargo:rerun-if-changed={}", head_path.display());
    let head = head.trim();
    let full = match head.strip_prefix("ref:") {
        None => head.to_string(),
        Some(name) => {
            let name = name.trim();
            let loose = common.join(name);
            if let Ok(sha) = fs::read_to_string(&loose) {
                println!("cargo:rerun-if-changed={}", loose.display());
                sha.trim().to_string()
            } else {
                // Packed (after `git gc`): the next commit writes the loose ref under refs/heads.
                let packed = common.join("packed-refs");
                println!("cargo:rerun-if-changed={}", packed.display());
                if let Some(dir) = loose.parent() {
                    println!("cargo:rerun-if-changed={}", dir.display());
                }
                fs::read_to_string(&packed).ok()?.lines().find_map(|l| {
                    let (sha, refname) = l.split_once(' ')?;
                    (refname.trim() == name).then(|| sha.to_string())
                })?
            }
        }
    };
    let short: String = full.chars().take(7).collect();
    (short.len() == 7 && short.chars().all(|c| c.is_ascii_hexdigit())).then_some(short)
}
