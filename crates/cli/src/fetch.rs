//! Downloads for `pack install --source registry`. The kernel speaks no HTTP; the binary fetches
//! bytes and hands the kernel a file.

use lumenflow_contracts::error_text::with_causes;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use lumenflow_contracts::digest::Sha256Digest;
use serde_json::Value;

use crate::output::CliError;

/// The most a tarball download may be; packs are source, not data sets.
const MAX_TARBALL_BYTES: u64 = 256 * 1024 * 1024;

/// https anywhere; plain http only to this machine (a local registry or test server).
pub fn check_url(url: &str) -> Result<url::Url, CliError> {
    let parsed = url::Url::parse(url).map_err(|e| {
        CliError::new(
            "INVALID_ARGUMENT",
            format!("`{url}` is not a valid URL: {e}"),
        )
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(CliError::new(
            "INVALID_ARGUMENT",
            format!("`{url}` must not embed credentials"),
        ));
    }
    let local = matches!(
        parsed.host(),
        Some(url::Host::Domain("localhost")) | Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_))
    ) && parsed.host().is_some_and(|h| match h {
        url::Host::Domain(d) => d == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    });
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if local => Ok(parsed),
        _ => Err(CliError::new(
            "INSECURE_URL",
            format!("`{url}` must use https:// (plain http is only accepted for localhost)"),
        )),
    }
}

fn client() -> Result<reqwest::blocking::Client, CliError> {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .connect_timeout(Duration::from_secs(15))
        .user_agent(concat!("lumenflow/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| CliError::new("HTTP_ERROR", format!("cannot create an HTTP client: {e}")))
}

pub fn download(url: &str, dest: &Path) -> Result<(), CliError> {
    let parsed = check_url(url)?;
    let mut resp = client()?.get(parsed).send().map_err(|e| {
        CliError::new(
            "HTTP_ERROR",
            format!("cannot fetch `{url}`: {}", with_causes(&e)),
        )
    })?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().unwrap_or_default();
        return Err(CliError::new(
            "HTTP_ERROR",
            format!(
                "`{url}` returned {status}: {}",
                body.chars().take(300).collect::<String>()
            ),
        ));
    }
    if resp.content_length().is_some_and(|n| n > MAX_TARBALL_BYTES) {
        return Err(CliError::new(
            "HTTP_ERROR",
            format!("`{url}` is larger than {MAX_TARBALL_BYTES} bytes"),
        ));
    }
    let mut file = std::fs::File::create(dest).map_err(|e| {
        CliError::new(
            "IO_ERROR",
            format!("cannot create `{}`: {e}", dest.display()),
        )
    })?;
    let mut limited = std::io::Read::take(&mut resp, MAX_TARBALL_BYTES + 1);
    let n = std::io::copy(&mut limited, &mut file).map_err(|e| {
        CliError::new(
            "HTTP_ERROR",
            format!("download of `{url}` failed: {}", with_causes(&e)),
        )
    })?;
    if n > MAX_TARBALL_BYTES {
        return Err(CliError::new(
            "HTTP_ERROR",
            format!("`{url}` is larger than {MAX_TARBALL_BYTES} bytes"),
        ));
    }
    file.flush().and_then(|_| file.sync_all()).map_err(|e| {
        CliError::new(
            "IO_ERROR",
            format!("cannot write `{}`: {e}", dest.display()),
        )
    })
}

pub struct Resolved {
    pub version: String,
    pub tarball_url: String,
    pub sha256: Sha256Digest,
}

/// The original registry protocol: `GET <registry>/api/registry/packs/<id>` lists versions with
/// the tarball digest; the tarball is at `.../versions/<version>/tarball`.
pub fn resolve_registry(registry: &str, id: &str, version: &str) -> Result<Resolved, CliError> {
    let base = check_url(registry)?;
    let base = base.as_str().trim_end_matches('/').to_string();
    let meta_url = format!("{base}/api/registry/packs/{id}");
    let resp = client()?.get(&meta_url).send().map_err(|e| {
        CliError::new(
            "HTTP_ERROR",
            format!("cannot reach registry `{meta_url}`: {}", with_causes(&e)),
        )
    })?;
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    if !status.is_success() {
        return Err(CliError::new(
            "HTTP_ERROR",
            format!(
                "Registry metadata lookup returned {status} for `{meta_url}`: {}",
                text.chars().take(300).collect::<String>()
            ),
        ));
    }
    let body: Value = serde_json::from_str(&text).map_err(|e| {
        CliError::new(
            "REGISTRY_INVALID",
            format!("registry answer for `{id}` is not JSON: {e}"),
        )
    })?;
    let pack = body.get("pack").unwrap_or(&body);
    let versions = pack
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            CliError::new(
                "REGISTRY_INVALID",
                format!("registry metadata for `{id}` did not include any versions"),
            )
        })?;
    let wanted = if version == "latest" {
        pack.get("latestVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
    } else {
        Some(version.to_string())
    };
    let entry = match &wanted {
        Some(v) => versions
            .iter()
            .find(|e| e.get("version").and_then(Value::as_str) == Some(v)),
        None => versions.last(),
    }
    .ok_or_else(|| {
        CliError::new(
            "VERSION_NOT_FOUND",
            format!("Version \"{version}\" not found for pack \"{id}\""),
        )
    })?;
    let integrity = entry.get("integrity").and_then(Value::as_str).unwrap_or("");
    let sha256 = Sha256Digest::parse_prefixed(integrity).map_err(|e| {
        CliError::new(
            "REGISTRY_INVALID",
            format!("registry gave an invalid integrity `{integrity}` for `{id}`: {e}"),
        )
    })?;
    let resolved_version = entry
        .get("version")
        .and_then(Value::as_str)
        .unwrap_or(version);
    Ok(Resolved {
        version: resolved_version.to_string(),
        tarball_url: format!("{base}/api/registry/packs/{id}/versions/{resolved_version}/tarball"),
        sha256,
    })
}
