//! Enrollment state: the issued token in `.lumenflow/state/conductor/enrollment.json` (ENR-07,
//! Q16), standalone minting with the workspace's own Ed25519 key (ENR-01), and the phone device
//! registrations in `devices.json` (ENR-04, Q37).
//!
//! The enrollment file holds a bearer secret, so it is written 0600 through a temporary file and
//! an atomic rename, and no function here ever logs or displays the token. In standalone mode the
//! workspace is its own issuer: the key at `.lumenflow/state/keys/workspace-ed25519.pem` signs
//! tokens, and its public half is recorded in the enrollment so the sidecar verifies every
//! inbound token against it exactly as it would against a control plane's key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lumenflow_contracts::identity::{
    check_id, DeviceRegistration, Enrollment, Subject, TokenClaims, DEVICES_FILE, ENROLLMENT_FILE,
};
use lumenflow_contracts::time::Timestamp;
use lumenflow_kernel::file_lock::LockFile;
use lumenflow_proof::keys::{KeyError, KeyPair};
use lumenflow_proof::token::{self, TokenError};

use crate::fsio::{self, Mode};

/// The enrollment record version this code reads and writes.
pub const ENROLLMENT_SCHEMA_VERSION: u32 = 1;
/// The workspace's signing key (standalone issuer), relative to the workspace.
pub const WORKSPACE_KEY_FILE: &str = ".lumenflow/state/keys/workspace-ed25519.pem";
/// The default lifetime of a standalone enrollment token.
pub const DEFAULT_ENROLLMENT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The default lifetime of a minted invocation token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The longest lifetime `token mint` accepts (a year).
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    #[error("the workspace is not enrolled: `{path}` does not exist (run `lumenflow enroll --standalone` or `lumenflow enroll --control-plane URL --code CODE`)")]
    NotEnrolled { path: PathBuf },
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is not a valid {what}: {reason}")]
    Invalid {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("{0}")]
    Argument(String),
    #[error(
        "`{path}` is readable by other users (mode {mode:o}); it holds the workspace's bearer \
         token, so it must be 0600 like the workspace key: run `chmod 600 {path}`, and enroll \
         again if someone else may have copied the token"
    )]
    Permissions { path: PathBuf, mode: u32 },
}

impl EnrollmentError {
    pub fn code(&self) -> &'static str {
        match self {
            EnrollmentError::NotEnrolled { .. } => "NOT_ENROLLED",
            EnrollmentError::Read { .. } | EnrollmentError::Write { .. } => "IO_ERROR",
            EnrollmentError::Invalid { .. } => "ENROLLMENT_INVALID",
            EnrollmentError::Key(e) => e.code(),
            EnrollmentError::Token(e) => e.code(),
            EnrollmentError::Argument(_) => "INVALID_ARGUMENT",
            EnrollmentError::Permissions { .. } => "ENROLLMENT_PERMISSIONS",
        }
    }
}

pub fn enrollment_path(workspace_dir: &Path) -> PathBuf {
    workspace_dir.join(ENROLLMENT_FILE)
}

pub fn devices_path(workspace_dir: &Path) -> PathBuf {
    workspace_dir.join(DEVICES_FILE)
}

pub fn workspace_key_path(workspace_dir: &Path) -> PathBuf {
    workspace_dir.join(WORKSPACE_KEY_FILE)
}

/// The issuer name of tokens a workspace signs itself.
pub fn standalone_issuer(workspace_id: &str) -> String {
    format!("lumenflow-workspace:{workspace_id}")
}

/// Read and check the enrollment record.
///
/// A record readable by other users is refused, as the workspace key is (`KEY_PERMISSIONS`):
/// the token in it is a bearer secret, and quietly using a file anyone may have copied would
/// hide that it leaked. `lumenflow enroll` always writes it 0600, so only a hand-made copy or a
/// `chmod` gets here.
pub fn load(workspace_dir: &Path) -> Result<Enrollment, EnrollmentError> {
    let path = enrollment_path(workspace_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(EnrollmentError::NotEnrolled { path })
        }
        Err(source) => return Err(EnrollmentError::Read { path, source }),
    };
    check_private_mode(&path)?;
    let invalid = |reason: String| EnrollmentError::Invalid {
        path: path.clone(),
        what: "enrollment record",
        reason,
    };
    let e: Enrollment = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    check(&e).map_err(invalid)?;
    Ok(e)
}

/// Refuse `path` when group or others may read or write it.
#[cfg(unix)]
fn check_private_mode(path: &Path) -> Result<(), EnrollmentError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| EnrollmentError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(EnrollmentError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_mode(_path: &Path) -> Result<(), EnrollmentError> {
    Ok(())
}

/// What a `stat` says about the enrollment file: enough to tell that it may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<FileStamp> {
        let meta = std::fs::metadata(path)?;
        Ok(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(&meta),
            #[cfg(not(unix))]
            inode: 0,
        })
    }
}

/// Whether `enrollment.json` still holds what a running sidecar loaded (walk-F F-6).
///
/// A sidecar verifies tokens against the issuer key it read at start. After `lumenflow enroll`
/// replaced the record (a new workspace key, another control plane), a sidecar that kept the old
/// key would go on accepting tokens the operator meant to retire, and refuse the new ones with a
/// bare "signature does not verify". Like a changed `workspace.yaml`
/// (`kernel::dispatch::freshness`), a changed record stops the sidecar's authentication instead:
/// every request is refused with `ENROLLMENT_CHANGED` until the process is restarted and loads
/// the new record. Swapping the key in place would leave the delivery loop pushing with the old
/// token and endpoint, so a restart is the one state that is consistent.
///
/// The check costs one `stat` per request: the file is read again only when its size,
/// modification time or inode moved, and a rewrite with the same content changes nothing.
#[derive(Debug)]
pub struct EnrollmentWatch {
    dir: PathBuf,
    path: PathBuf,
    loaded: Enrollment,
    /// The last stamp whose content was found equal to the loaded record (`None`: not known).
    same_as: std::sync::Mutex<Option<FileStamp>>,
}

impl EnrollmentWatch {
    /// The record of `workspace_dir` and a watch on it. The stamp is taken before the read, so
    /// a record replaced while the sidecar starts is seen as a change.
    pub fn load(workspace_dir: &Path) -> Result<(Enrollment, EnrollmentWatch), EnrollmentError> {
        let path = enrollment_path(workspace_dir);
        let before = FileStamp::of(&path).ok();
        let e = load(workspace_dir)?;
        let watch = EnrollmentWatch {
            dir: workspace_dir.to_path_buf(),
            path,
            loaded: e.clone(),
            same_as: std::sync::Mutex::new(before),
        };
        Ok((e, watch))
    }

    /// `None` while the file holds what was loaded; else why requests must be refused.
    pub fn changed(&self) -> Option<String> {
        let shown = self.path.display();
        let now = match FileStamp::of(&self.path) {
            Ok(s) => s,
            Err(e) => {
                return Some(format!(
                    "`{shown}` can no longer be read ({e}): the workspace folder was moved or \
                     the enrollment removed after this sidecar started; restart the sidecar from \
                     the workspace's current folder (every token is refused until then)"
                ))
            }
        };
        let mut same_as = self.same_as.lock().unwrap_or_else(|e| e.into_inner());
        if same_as.as_ref() == Some(&now) {
            return None;
        }
        match load(&self.dir) {
            Ok(e) if e == self.loaded => {
                *same_as = Some(now);
                None
            }
            Ok(e) if e.issuer_public_key_pem.trim() != self.loaded.issuer_public_key_pem.trim() => {
                Some(format!(
                    "`{shown}` changed after this sidecar loaded it: the workspace's token issuer \
                     key was replaced (`lumenflow enroll`), so tokens signed by the old key are no \
                     longer trusted and tokens signed by the new one cannot be checked here; \
                     restart the sidecar to load the new enrollment (every token is refused until \
                     then)"
                ))
            }
            Ok(_) => Some(format!(
                "`{shown}` changed after this sidecar loaded it (a new `lumenflow enroll`): \
                 restart the sidecar to load the new enrollment (every token is refused until \
                 then)"
            )),
            Err(err) => Some(format!(
                "`{shown}` changed after this sidecar loaded it and can no longer be used \
                 ({err}); fix it, then restart the sidecar (every token is refused until then)"
            )),
        }
    }
}

/// The checks every enrollment passes before it is used or written.
pub fn check(e: &Enrollment) -> Result<(), String> {
    if e.schema_version != ENROLLMENT_SCHEMA_VERSION {
        return Err(format!(
            "schema_version is {}, this runtime reads version {ENROLLMENT_SCHEMA_VERSION}",
            e.schema_version
        ));
    }
    if e.token.is_empty() {
        return Err("field `token` is empty".into());
    }
    let subject = Subject::parse(&e.subject).map_err(|err| format!("field `subject`: {err}"))?;
    if subject.workspace_id() != e.workspace_id {
        return Err(format!(
            "field `subject` names workspace `{}` but `workspace_id` is `{}`",
            subject.workspace_id(),
            e.workspace_id
        ));
    }
    lumenflow_proof::keys::PublicKey::from_pem(&e.issuer_public_key_pem, "issuer_public_key_pem")
        .map_err(|err| format!("field `issuer_public_key_pem`: {err}"))?;
    if let Some(endpoint) = &e.control_plane_endpoint {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!(
                "field `control_plane_endpoint` is `{endpoint}`, expected an http:// or https:// URL"
            ));
        }
    }
    Ok(())
}

/// Install an enrollment record (0600, atomic). Its token must verify against the issuer key it
/// names, for the workspace it names: a record that could never authenticate is refused.
pub fn save(workspace_dir: &Path, e: &Enrollment) -> Result<PathBuf, EnrollmentError> {
    let path = enrollment_path(workspace_dir);
    let invalid = |reason: String| EnrollmentError::Invalid {
        path: path.clone(),
        what: "enrollment record",
        reason,
    };
    check(e).map_err(invalid)?;
    let key = lumenflow_proof::keys::PublicKey::from_pem(&e.issuer_public_key_pem, "issuer key")?;
    let claims = token::verify(&e.token, &key, &e.workspace_id)
        .map_err(|err| invalid(format!("field `token`: {err}")))?;
    if claims.sub != e.subject {
        return Err(invalid(format!(
            "the token's subject `{}` differs from field `subject` `{}`",
            claims.sub, e.subject
        )));
    }
    let bytes = serde_json::to_vec_pretty(e).map_err(|err| invalid(err.to_string()))?;
    fsio::write_atomic(&path, &bytes, Mode::Private).map_err(|source| EnrollmentError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// What to put in a standalone token.
#[derive(Debug, Clone)]
pub struct MintRequest {
    pub subject: String,
    pub scopes: Vec<String>,
    pub ttl: Duration,
    pub device_name: Option<String>,
}

/// Sign a token with the workspace's own key (created on first use, 0600).
pub fn mint_standalone(
    workspace_dir: &Path,
    workspace_id: &str,
    req: &MintRequest,
) -> Result<(String, TokenClaims), EnrollmentError> {
    let subject =
        Subject::parse(&req.subject).map_err(|e| EnrollmentError::Argument(e.to_string()))?;
    if subject.workspace_id() != workspace_id {
        return Err(EnrollmentError::Argument(format!(
            "subject `{}` belongs to workspace `{}`, not to this workspace `{workspace_id}`",
            req.subject,
            subject.workspace_id()
        )));
    }
    if req.scopes.is_empty() {
        return Err(EnrollmentError::Argument(
            "a token needs at least one scope (e.g. `workspace`)".into(),
        ));
    }
    for s in &req.scopes {
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EnrollmentError::Argument(format!(
                "scope `{s}` is invalid: scopes are non-empty words without spaces"
            )));
        }
    }
    if req.ttl.is_zero() || req.ttl > MAX_TTL {
        return Err(EnrollmentError::Argument(format!(
            "the lifetime must be between 1 second and {} days",
            MAX_TTL.as_secs() / 86_400
        )));
    }
    let key = KeyPair::load_or_create(&workspace_key_path(workspace_dir))?;
    let now = token::now_unix();
    let claims = TokenClaims {
        iss: standalone_issuer(workspace_id),
        sub: req.subject.clone(),
        aud: workspace_id.to_string(),
        scope: req.scopes.join(" "),
        iat: now,
        exp: now + req.ttl.as_secs() as i64,
        jti: token::new_jti(),
        device_name: req.device_name.clone(),
    };
    let t = token::mint(&key, &claims)?;
    Ok((t, claims))
}

/// A standalone enrollment: the workspace subject, signed by the workspace key.
pub fn standalone_enrollment(
    workspace_dir: &Path,
    workspace_id: &str,
    scopes: Vec<String>,
    ttl: Duration,
) -> Result<Enrollment, EnrollmentError> {
    let (token, claims) = mint_standalone(
        workspace_dir,
        workspace_id,
        &MintRequest {
            subject: workspace_id.to_string(),
            scopes: scopes.clone(),
            ttl,
            device_name: None,
        },
    )?;
    let key = KeyPair::load(&workspace_key_path(workspace_dir))?;
    Ok(Enrollment {
        schema_version: ENROLLMENT_SCHEMA_VERSION,
        token,
        subject: claims.sub,
        scopes,
        issued_at: Timestamp::from_unix_millis(claims.iat * 1000).to_rfc3339(),
        expires_at: Timestamp::from_unix_millis(claims.exp * 1000).to_rfc3339(),
        issuer: claims.iss,
        issuer_public_key_pem: key.public().to_pem(),
        control_plane_endpoint: None,
        workspace_id: workspace_id.to_string(),
        device_id: None,
    })
}

/// Parse a lifetime: `90`, `90s`, `15m`, `1h`, `7d`.
pub fn parse_ttl(text: &str) -> Result<Duration, EnrollmentError> {
    let bad = || {
        EnrollmentError::Argument(format!(
            "lifetime `{text}` is invalid: expected a number of seconds or a number followed by s, m, h or d (e.g. `1h`)"
        ))
    };
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).map(Duration::from_secs).ok_or_else(bad)
}

/// The registered devices (an absent file is an empty list).
pub fn load_devices(workspace_dir: &Path) -> Result<Vec<DeviceRegistration>, EnrollmentError> {
    let path = devices_path(workspace_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| EnrollmentError::Invalid {
            path,
            what: "device list",
            reason: format!("{e}; expected a JSON list of {{device_id, name, registered_at}}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(EnrollmentError::Read { path, source }),
    }
}

/// Register (or rename) a phone device. Returns the record written.
pub fn add_device(
    workspace_dir: &Path,
    device_id: &str,
    name: &str,
) -> Result<DeviceRegistration, EnrollmentError> {
    check_id(device_id).map_err(|reason| {
        EnrollmentError::Argument(format!("device id `{device_id}` is invalid: {reason}"))
    })?;
    let name = name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(EnrollmentError::Argument(
            "a device name is 1 to 200 printable characters".into(),
        ));
    }
    let path = devices_path(workspace_dir);
    // Read, change and write under a lock: two `device add`s at once both stay.
    let lock = path.with_file_name(".devices.lock");
    let _held = LockFile::acquire(&lock).map_err(|source| EnrollmentError::Write {
        path: lock.clone(),
        source,
    })?;
    let mut devices = load_devices(workspace_dir)?;
    let record = DeviceRegistration {
        device_id: device_id.to_string(),
        name: name.to_string(),
        registered_at: Timestamp::now().to_rfc3339(),
    };
    devices.retain(|d| d.device_id != device_id);
    devices.push(record.clone());
    devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    let bytes = serde_json::to_vec_pretty(&devices).map_err(|e| EnrollmentError::Invalid {
        path: path.clone(),
        what: "device list",
        reason: e.to_string(),
    })?;
    fsio::write_atomic(&path, &bytes, Mode::Private)
        .map_err(|source| EnrollmentError::Write { path, source })?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_device_registrations_are_all_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        std::thread::scope(|s| {
            for i in 0..8 {
                let dir = dir.path();
                s.spawn(move || {
                    add_device(dir, &format!("phone-{i}"), &format!("Phone {i}")).expect("add");
                });
            }
        });
        let devices = load_devices(dir.path()).expect("load");
        assert_eq!(devices.len(), 8, "{devices:?}");
    }

    #[test]
    fn standalone_enrollment_round_trips_and_verifies() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = standalone_enrollment(
            dir.path(),
            "ws-1",
            vec!["workspace".into()],
            Duration::from_secs(60),
        )
        .expect("enroll");
        save(dir.path(), &e).expect("save");
        let back = load(dir.path()).expect("load");
        assert_eq!(back, e);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(enrollment_path(dir.path()))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_record_whose_token_does_not_verify_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut e = standalone_enrollment(
            dir.path(),
            "ws-1",
            vec!["workspace".into()],
            Duration::from_secs(60),
        )
        .expect("enroll");
        e.issuer_public_key_pem = KeyPair::generate().public().to_pem();
        let err = save(dir.path(), &e).expect_err("refused");
        assert_eq!(err.code(), "ENROLLMENT_INVALID");
        assert!(matches!(
            load(dir.path()),
            Err(EnrollmentError::NotEnrolled { .. })
        ));
    }

    #[test]
    fn minting_checks_subject_scopes_and_ttl() {
        let dir = tempfile::tempdir().expect("tmp");
        let req = |subject: &str, scopes: &[&str], ttl| MintRequest {
            subject: subject.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ttl,
            device_name: None,
        };
        let hour = Duration::from_secs(3600);
        assert!(
            mint_standalone(dir.path(), "ws", &req("ws:phone:p1", &["workspace"], hour)).is_ok()
        );
        for bad in [
            req("other", &["workspace"], hour),
            req("ws", &[], hour),
            req("ws", &["two words"], hour),
            req("ws", &["workspace"], Duration::ZERO),
        ] {
            let e = mint_standalone(dir.path(), "ws", &bad).expect_err("refused");
            assert_eq!(e.code(), "INVALID_ARGUMENT");
        }
    }

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("90").expect("s"), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").expect("m"), Duration::from_secs(900));
        assert_eq!(parse_ttl("1h").expect("h"), Duration::from_secs(3600));
        assert_eq!(parse_ttl("7d").expect("d"), Duration::from_secs(7 * 86_400));
        for bad in ["", "h", "1w", "-1h", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn devices_are_added_and_renamed() {
        let dir = tempfile::tempdir().expect("tmp");
        add_device(dir.path(), "pixel-7", "Ana's phone").expect("add");
        add_device(dir.path(), "pixel-7", "Ana's Pixel").expect("rename");
        add_device(dir.path(), "iphone", "Bo").expect("add");
        let all = load_devices(dir.path()).expect("load");
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].name, "Ana's Pixel");
        assert!(add_device(dir.path(), "../x", "n").is_err());
    }
}
