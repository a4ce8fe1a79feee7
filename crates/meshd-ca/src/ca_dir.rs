//! The file-fed CA (`meshd controlplane --ca-dir DIR`, SPEC §9). With DIR absent or holding none of the
//! four files, a self-signed root is made and written before the control plane accepts connections:
//! DIR 0700, `root-cert.pem` 0644 (what agents get as `--ca-file`), `ca-cert.pem` and `cert-chain.pem`
//! 0644, `ca-key.pem` 0600. Files a user put there are used as they are (all four are needed). They are
//! re-read when they change (checked at most once a second, on demand), so a root rotation needs no
//! restart; a change that does not load is logged and the CA in force stays.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::authority::{CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT};
use crate::{CaError, CaPem, CaSource, CertificateAuthority};

const FILES: [&str; 4] = [CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT];
const RECHECK: Duration = Duration::from_secs(1);

type Stamps = [Option<(u64, Option<SystemTime>, u64)>; 4];

/// Whether the CA was found or made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The files were there.
    Loaded,
    /// DIR was absent or empty: a new self-signed root was written.
    Created,
}

struct State {
    checked: Instant,
    stamps: Stamps,
    ca: Arc<CertificateAuthority>,
}

/// The CA of a directory, re-read when its files change.
pub struct CaDir {
    dir: PathBuf,
    state: Mutex<State>,
}

impl std::fmt::Debug for CaDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaDir")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CaError + 'a {
    move |source| CaError::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

fn stamps(dir: &Path) -> Stamps {
    FILES.map(|f| {
        std::fs::metadata(dir.join(f))
            .ok()
            .map(|m| (m.len(), m.modified().ok(), m.ino()))
    })
}

/// Reads the four files; every one must be there.
pub fn read(dir: &Path) -> Result<CaPem, CaError> {
    let text = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| CaError::Io {
            action: "read",
            path: path.display().to_string(),
            source,
        })
    };
    Ok(CaPem {
        ca_cert: text(CA_CERT)?,
        ca_key: text(CA_KEY)?,
        cert_chain: text(CERT_CHAIN)?,
        root_cert: text(ROOT_CERT)?,
    })
}

/// Writes a CA into `dir` (created 0700) with the modes of SPEC §9; each file appears whole (written
/// under a temporary name, then renamed), the key never readable by others.
pub fn write(dir: &Path, pem: &CaPem) -> Result<(), CaError> {
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io("set the mode of", dir))?;
    for (name, text, mode) in [
        (CA_KEY, &pem.ca_key, 0o600),
        (CA_CERT, &pem.ca_cert, 0o644),
        (CERT_CHAIN, &pem.cert_chain, 0o644),
        (ROOT_CERT, &pem.root_cert, 0o644),
    ] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
    }
    Ok(())
}

impl CaDir {
    /// Loads the CA in `dir`, or makes one for `trust_domain` when `dir` is absent or holds none of
    /// the four files. Some but not all of them is an error naming the missing ones.
    pub fn open(dir: &Path, trust_domain: &str) -> Result<(Self, Origin), CaError> {
        let present: Vec<&str> = FILES.into_iter().filter(|f| dir.join(f).exists()).collect();
        let origin = if present.is_empty() {
            let pem = CaPem::self_signed(trust_domain, SystemTime::now())?;
            write(dir, &pem)?;
            Origin::Created
        } else if present.len() < FILES.len() {
            let missing: Vec<&str> = FILES.into_iter().filter(|f| !present.contains(f)).collect();
            return Err(CaError::material(
                dir.display().to_string(),
                format!(
                    "has {} but not {}: give all four CA files, or none to have a CA made",
                    present.join(", "),
                    missing.join(", ")
                ),
            ));
        } else {
            Origin::Loaded
        };
        let ca = CertificateAuthority::new(&read(dir)?).map_err(|e| in_dir(dir, e))?;
        let state = State {
            checked: Instant::now(),
            stamps: stamps(dir),
            ca: Arc::new(ca),
        };
        Ok((
            Self {
                dir: dir.to_path_buf(),
                state: Mutex::new(state),
            },
            origin,
        ))
    }

    /// The CA in force, without looking at the files.
    pub fn current(&self) -> Arc<CertificateAuthority> {
        Arc::clone(&self.state.lock().unwrap_or_else(|p| p.into_inner()).ca)
    }
}

fn in_dir(dir: &Path, e: CaError) -> CaError {
    match e {
        CaError::Material { what, reason } => CaError::Material {
            what: dir.join(what).display().to_string(),
            reason,
        },
        other => other,
    }
}

impl CaSource for CaDir {
    fn authority(&self) -> Result<Arc<CertificateAuthority>, CaError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let now = stamps(&self.dir);
            if now != state.stamps {
                state.stamps = now;
                match read(&self.dir).and_then(|pem| CertificateAuthority::new(&pem)) {
                    Ok(ca) => {
                        tracing::info!(dir = %self.dir.display(), subject = ca.subject(), roots = ca.root_count(), "CA files changed; the new CA is in force");
                        state.ca = Arc::new(ca);
                    }
                    Err(e) => {
                        tracing::error!(dir = %self.dir.display(), error = %in_dir(&self.dir, e), "CA files changed but do not load; the previous CA stays in force")
                    }
                }
            }
        }
        Ok(Arc::clone(&state.ca))
    }
}
