//! `lumenflow pack validate|hash|install|list`.

use std::path::{Path, PathBuf};

use lumenflow_contracts::digest::Sha256Digest;
use lumenflow_kernel::install::{self, InstallRequest, InstallSource, InstallStep};
use lumenflow_kernel::integrity::{self, HashOptions};
use lumenflow_kernel::loader::{LoadError, PackLoader, PackLocation};
use lumenflow_kernel::pack_report::{self, PackReport};
use lumenflow_kernel::workspace::{self, Integrity};
use serde_json::json;

use super::{display_path, Context};
use crate::fetch;
use crate::output::{print_ok, warn, CliError};
use crate::progress;

pub struct Locator {
    pub pack_root: Option<PathBuf>,
    pub id: Option<String>,
    pub packs_root: Option<PathBuf>,
    pub builtin: Option<String>,
}

enum Target {
    Dir(PathBuf),
    Builtin(lumenflow_kernel::builtin::EmbeddedPack),
}

fn resolve(ctx: &Context, l: &Locator) -> Result<Target, CliError> {
    if let Some(id) = &l.builtin {
        return lumenflow_packs::builtin_packs()
            .iter()
            .find(|p| p.id == id)
            .map(|p| Target::Builtin(*p))
            .ok_or_else(|| {
                let known: Vec<&str> = lumenflow_packs::builtin_packs()
                    .iter()
                    .map(|p| p.id)
                    .collect();
                CliError::new("PACK_NOT_FOUND", format!("no built-in pack `{id}`")).with_help(
                    if known.is_empty() {
                        "this build has no built-in packs yet".to_string()
                    } else {
                        format!("built-in packs: {}", known.join(", "))
                    },
                )
            });
    }
    let packs_root = match &l.packs_root {
        Some(p) => p.clone(),
        None => match ctx.optional_workspace() {
            Some(ws) => ws.join("packs"),
            None => ctx.cwd()?.join("packs"),
        },
    };
    let root = pack_report::resolve_pack_root(l.pack_root.as_deref(), l.id.as_deref(), &packs_root)
        .ok_or_else(|| {
            CliError::new(
                "INVALID_ARGUMENT",
                "Provide --id <packId>, --pack-root <dir> or --builtin <id>",
            )
        })?;
    if !root.is_dir() {
        // `--id` with no folder of that name means the built-in pack, as for the loader and
        // `pack install --source local`, so `pack hash --id software-delivery` prints the hash
        // a pin of the built-in pack holds.
        if let (Some(id), None) = (&l.id, &l.packs_root) {
            let ws_dir = match ctx.optional_workspace() {
                Some(ws) => ws,
                None => ctx.cwd()?,
            };
            let vendored = ws_dir.join(VENDORED_PACKS).join(id);
            if vendored.is_dir() {
                return Ok(Target::Dir(vendored));
            }
            if let Some(p) = builtin_unless_folder(&ws_dir, id) {
                return Ok(Target::Builtin(*p));
            }
        }
        return Err(CliError::new(
            "PACK_NOT_FOUND",
            format!("pack folder `{}` does not exist", display_path(&root)),
        ));
    }
    Ok(Target::Dir(root))
}

fn import_allowlist(ctx: &Context) -> Vec<String> {
    ctx.optional_workspace()
        .and_then(|dir| workspace::read_workspace(&dir).ok())
        .map(|doc| doc.spec.security.import_allowlist)
        .unwrap_or_else(|| {
            lumenflow_kernel::import_scan::DEFAULT_BARE_IMPORT_ALLOWLIST
                .iter()
                .map(|s| s.to_string())
                .collect()
        })
}

fn run_report(ctx: &Context, target: &Target) -> PackReport {
    match target {
        Target::Builtin(p) => pack_report::validate_embedded(p),
        Target::Dir(root) => {
            let bar = progress::bytes_bar(progress::dir_size(root), "hashing", ctx.json);
            let tick = |n: u64| bar.inc(n);
            let report = pack_report::validate_pack_dir(root, &import_allowlist(ctx), Some(&tick));
            bar.finish_and_clear();
            report
        }
    }
}

pub fn validate(ctx: &Context, l: &Locator) -> Result<(), CliError> {
    let target = resolve(ctx, l)?;
    let mut report = run_report(ctx, &target);
    hold_to_pin(ctx, &target, &mut report);
    if ctx.json {
        print_ok(true, &report.to_json(), "");
    } else {
        crate::output::stdout_text(&report.render_text());
        for check in &report.checks {
            for d in &check.diagnostics {
                eprintln!(
                    "{}",
                    crate::output::render_diagnostic(
                        d,
                        std::io::IsTerminal::is_terminal(&std::io::stderr())
                    )
                );
            }
        }
    }
    if report.passed() {
        Ok(())
    } else {
        // The report above is the explanation; the error sets the exit code and gives scripts
        // the JSON error object.
        Err(CliError::new("VALIDATION_FAILED", "pack validation failed").already_reported(true))
    }
}

/// When `target` is where the loader finds a pack the workspace pins (`packs/<id>`, the
/// vendored folder, or the built-in pack), its integrity check compares with that pin.
fn hold_to_pin(ctx: &Context, target: &Target, report: &mut PackReport) {
    let Some(ws_dir) = ctx.optional_workspace() else {
        return;
    };
    let Ok(doc) = workspace::read_workspace(&ws_dir) else {
        return;
    };
    let Some(id) = report.manifest.as_ref().map(|m| m.manifest.id.clone()) else {
        return;
    };
    let Some(pin) = doc.spec.packs.iter().find(|p| p.id == id) else {
        return;
    };
    let Integrity::Sha256(pinned) = &pin.integrity else {
        return;
    };
    let loaded_from_here = match target {
        Target::Builtin(p) => p.id == id,
        Target::Dir(root) => {
            let here = root.canonicalize().ok();
            [
                ws_dir.join("packs").join(&id),
                ws_dir.join(VENDORED_PACKS).join(&id),
            ]
            .iter()
            .any(|d| d.canonicalize().ok().is_some_and(|d| Some(d) == here))
        }
    };
    if loaded_from_here {
        let fix = format!(
            "lumenflow pack install --id {id} --source local --version {} --force",
            pin.version
        );
        report.compare_with_pin(&id, pinned, &fix);
    }
}

pub fn hash(ctx: &Context, l: &Locator) -> Result<(), CliError> {
    let target = resolve(ctx, l)?;
    let (hash, root_shown) = match &target {
        Target::Builtin(p) => (p.hash(), format!("<built-in>/{}", p.id)),
        Target::Dir(root) => {
            let files = integrity::list_pack_files(root, integrity::DEFAULT_EXCLUSIONS)
                .map_err(|e| CliError::new(e.code(), e.to_string()))?;
            let total = files.iter().map(|f| f.len).sum();
            let bar = progress::bytes_bar(total, "hashing", ctx.json);
            let tick = |n: u64| bar.inc(n);
            let options = HashOptions {
                progress: Some(&tick),
                ..HashOptions::default()
            };
            let result = integrity::hash_pack_files(&files, &options);
            bar.finish_and_clear();
            let hash = result.map_err(|e| CliError::new(e.code(), e.to_string()))?;
            (hash, display_path(root))
        }
    };
    print_ok(
        ctx.json,
        &json!({"pack_root": root_shown, "integrity": hash.prefixed()}),
        &hash.prefixed(),
    );
    Ok(())
}

pub struct InstallArgs {
    pub id: String,
    pub version: String,
    pub source: &'static str,
    pub pack_root: Option<PathBuf>,
    pub packs_root: Option<PathBuf>,
    pub url: Option<String>,
    pub rev: Option<String>,
    pub tarball: Option<String>,
    pub sha256: Option<String>,
    pub registry_url: Option<String>,
    pub integrity: Option<String>,
    pub force: bool,
    pub dev: bool,
}

fn parse_digest(s: &str) -> Result<Sha256Digest, CliError> {
    let prefixed = if s.starts_with("sha256:") {
        s.to_string()
    } else {
        format!("sha256:{s}")
    };
    Sha256Digest::parse_prefixed(&prefixed)
        .map_err(|e| CliError::new("INVALID_ARGUMENT", format!("--sha256 `{s}`: {e}")))
}

pub fn install(ctx: &Context, mut a: InstallArgs) -> Result<(), CliError> {
    let doc = ctx.workspace()?;
    let latest_from_registry =
        a.version == "latest" && a.source == "registry" && a.registry_url.is_some();
    if !latest_from_registry && !lumenflow_kernel::manifest::is_semver(&a.version) {
        return Err(CliError::new(
            "INVALID_ARGUMENT",
            format!(
                "--version `{}` is not a semantic version such as `1.0.0`",
                a.version
            ),
        )
        .with_help("`latest` is accepted only with --source registry --registry-url"));
    }
    // Downloads land here and are removed when the install ends, whatever the outcome.
    let download_dir = tempfile::tempdir()
        .map_err(|e| CliError::new("IO_ERROR", format!("cannot create a temporary folder: {e}")))?;
    let plan = match builtin_fallback(&doc, &a) {
        Some(pack) => Plan::Builtin(pack),
        None => Plan::Source(install_source(ctx, &doc, &mut a, &download_dir)?),
    };
    let from_binary = matches!(plan, Plan::Builtin(_));
    let spinner = progress::spinner("installing", ctx.json);
    let mut step = |s: InstallStep| {
        spinner.set_message(match s {
            InstallStep::Fetching => "fetching",
            InstallStep::Validating => "validating",
            InstallStep::Hashing => "hashing",
            InstallStep::Pinning => "pinning",
        })
    };
    let result = match plan {
        Plan::Builtin(pack) => install::pin_builtin(
            &doc,
            pack,
            &a.version,
            a.integrity.as_deref(),
            a.dev,
            &mut step,
        ),
        Plan::Source(source) => {
            let req = InstallRequest {
                id: a.id.clone(),
                version: a.version.clone(),
                source,
                expected_integrity: a.integrity.clone(),
                force: a.force,
                dev: a.dev,
            };
            install::install(&doc, &req, &mut step, None)
        }
    };
    spinner.finish_and_clear();
    let outcome = result.map_err(|e| match e {
        install::InstallError::Workspace(d) => CliError::from(d),
        install::InstallError::Validation {
            ref diagnostics,
            ref errors,
            ..
        } => {
            let mut message = e.to_string();
            for line in errors {
                message.push_str(&format!("\n  {line}"));
            }
            let diags = lumenflow_kernel::diagnostics::Diagnostics(diagnostics.clone());
            let mut err = CliError::from_diagnostics(e.code(), message, diags);
            err.help = Some(
                "fix the pack, check it with `lumenflow pack validate`, then install again".into(),
            );
            err
        }
        other => {
            let err = CliError::new(other.code(), other.to_string());
            let unnamed = a.pack_root.is_none() && a.packs_root.is_none();
            if other.code() == "SOURCE_NOT_FOUND" && a.source == "local" && unnamed {
                let known: Vec<&str> = lumenflow_packs::builtin_packs()
                    .iter()
                    .map(|p| p.id)
                    .collect();
                err.with_help(format!(
                    "no built-in pack is called `{}` either (built in: {}); name a folder with \
                     --pack-root",
                    a.id,
                    known.join(", ")
                ))
            } else {
                err
            }
        }
    })?;
    if !outcome.preserved_layout {
        warn(ctx.json, "workspace.yaml was re-emitted: its comments and layout could not be kept for this change");
    }
    if a.dev {
        warn(ctx.json, "pinned with integrity: dev; the pack will not be verified at load and is refused in production");
    }
    if let Some(m) = outcome.report.manifest.as_ref().map(|m| &m.manifest) {
        if let Some(note) = workspace_wide_rules(m) {
            warn(ctx.json, &note);
        }
        for note in rules_matching_no_tool(m, &known_tool_names(&doc, m)) {
            warn(ctx.json, &note);
        }
    }
    let verb = if from_binary {
        if outcome.unchanged {
            "Already pinned: the built-in pack"
        } else {
            "Pinned the built-in pack"
        }
    } else if outcome.unchanged {
        "Pinned (already installed, identical)"
    } else if outcome.previous_integrity.is_some() {
        "Re-pinned as it is now"
    } else if outcome.in_place {
        "Pinned (in place)"
    } else if outcome.replaced {
        "Replaced and pinned"
    } else {
        "Installed and pinned"
    };
    let mut human = format!(
        "{verb} {}@{} in {}\n  integrity: {}\n  source:    {}\n",
        outcome.pin.id,
        outcome.pin.version,
        display_path(&outcome.dest),
        outcome.pin.integrity,
        outcome.pin.source.as_str(),
    );
    if let Some(previous) = &outcome.previous_integrity {
        human.push_str(&format!(
            "  was:       {previous} (the folder's files had changed)\n"
        ));
    }
    print_ok(
        ctx.json,
        &json!({
            "pin": outcome.pin,
            "path": outcome.dest,
            "hash": outcome.hash.prefixed(),
            "replaced": outcome.replaced,
            "unchanged": outcome.unchanged,
            "previous_integrity": outcome.previous_integrity,
            "preserved_layout": outcome.preserved_layout,
        }),
        &human,
    );
    Ok(())
}

/// A pack's tool-request rules that name no tool or pack apply to every call in the workspace
/// (KRN-08's pack layer), which an installer should hear about once.
fn workspace_wide_rules(m: &lumenflow_kernel::manifest::PackManifest) -> Option<String> {
    use lumenflow_kernel::manifest::{PolicyDecisionKind, PolicyTrigger};
    let wide: Vec<&str> = m
        .policies
        .iter()
        .filter(|p| p.trigger == PolicyTrigger::OnToolRequest)
        .filter(|p| p.decision != PolicyDecisionKind::Allow)
        .filter(|p| {
            p.when
                .as_ref()
                .is_none_or(|w| w.tool.is_none() && w.pack.is_none())
        })
        .map(|p| p.id.as_str())
        .collect();
    if wide.is_empty() {
        return None;
    }
    Some(format!(
        "pack `{}` adds {} rule{} ({}) that appl{} to the tools of every pack in this workspace, \
         not only its own; a rule limited with `when: {{pack: {}}}` or `when: {{tool: ...}}` \
         governs only those tools",
        m.id,
        wide.len(),
        if wide.len() == 1 { "" } else { "s" },
        wide.iter()
            .map(|id| format!("`{id}`"))
            .collect::<Vec<_>>()
            .join(", "),
        if wide.len() == 1 { "ies" } else { "y" },
        m.id
    ))
}

/// Every tool name the workspace can dispatch once `m` is pinned: `m`'s own, the other pinned
/// packs' (those that load) and the built-in packs'.
fn known_tool_names(
    doc: &workspace::WorkspaceDocument,
    m: &lumenflow_kernel::manifest::PackManifest,
) -> Vec<String> {
    let mut names: Vec<String> = m.tools.iter().map(|t| t.name.clone()).collect();
    let loader = PackLoader::for_workspace(doc, lumenflow_packs::builtin_packs());
    for pin in doc.spec.packs.iter().filter(|p| p.id != m.id) {
        if let Ok(p) = loader.load(&doc.spec, &pin.id) {
            names.extend(p.manifest.manifest.tools.iter().map(|t| t.name.clone()));
        }
    }
    names
}

/// Rules whose `when.tool` glob names no tool the workspace has: a typo there makes a deny or
/// an approval that never fires, and nothing else would say so.
fn rules_matching_no_tool(
    m: &lumenflow_kernel::manifest::PackManifest,
    known: &[String],
) -> Vec<String> {
    m.policies
        .iter()
        .filter_map(|p| {
            let glob = p.when.as_ref()?.tool.as_ref()?;
            let matches_any = known.iter().any(|t| glob.is_match(t).unwrap_or(true));
            (!matches_any).then(|| {
                format!(
                    "rule `{}` of pack `{}` has `when.tool: {}`, which matches none of the tools \
                     this workspace has ({}); it will not fire until such a tool is pinned",
                    p.id,
                    m.id,
                    glob.as_str(),
                    known.join(", ")
                )
            })
        })
        .collect()
}

/// What `pack install` does: fetch a source into the workspace, or pin a built-in pack.
enum Plan {
    Builtin(&'static lumenflow_kernel::builtin::EmbeddedPack),
    Source(InstallSource),
}

/// `--source local` with no folder named, when neither local root the loader looks in first
/// holds the pack: the last root is the packs built into this binary (KRN-04), so pin that one
/// instead of failing on a missing folder.
fn builtin_fallback(
    doc: &workspace::WorkspaceDocument,
    a: &InstallArgs,
) -> Option<&'static lumenflow_kernel::builtin::EmbeddedPack> {
    if a.source != "local" || a.pack_root.is_some() || a.packs_root.is_some() {
        return None;
    }
    builtin_unless_folder(&doc.dir, &a.id)
}

/// The second local root the loader looks in, after `packs/` (KRN-04).
const VENDORED_PACKS: &str = "packages/@lumenflow/packs";

/// The built-in pack `id`, unless the workspace in `ws_dir` has a folder of that id in one of
/// the loader's local roots (which the loader would load instead).
fn builtin_unless_folder(
    ws_dir: &Path,
    id: &str,
) -> Option<&'static lumenflow_kernel::builtin::EmbeddedPack> {
    let folders = [
        ws_dir.join("packs").join(id),
        ws_dir.join(VENDORED_PACKS).join(id),
    ];
    if folders.iter().any(|f| f.exists()) {
        return None;
    }
    lumenflow_packs::builtin_packs().iter().find(|p| p.id == id)
}

/// The source `pack install` fetches from (downloads land in `download_dir`).
fn install_source(
    ctx: &Context,
    doc: &workspace::WorkspaceDocument,
    a: &mut InstallArgs,
    download_dir: &tempfile::TempDir,
) -> Result<InstallSource, CliError> {
    Ok(match a.source {
        "local" => {
            let root = match (&a.pack_root, &a.packs_root) {
                (Some(p), _) => p.clone(),
                (None, Some(base)) => base.join(&a.id),
                // As `pack validate --id`: the workspace's own packs folder (pins in place).
                (None, None) => doc.dir.join("packs").join(&a.id),
            };
            InstallSource::Local { path: root }
        }
        "git" => {
            let url = a.url.clone().ok_or_else(|| {
                CliError::new("INVALID_ARGUMENT", "--source git needs --url <repository>")
            })?;
            // A repository on this machine may be given as a plain path; pin it as a URL.
            let url = match std::path::Path::new(&url).canonicalize() {
                Ok(abs) if abs.is_dir() => format!("file://{}", abs.display()),
                _ => url,
            };
            InstallSource::Git {
                url,
                rev: a.rev.clone(),
            }
        }
        _ => {
            let (location, digest) = match (&a.tarball, &a.sha256, &a.registry_url) {
                (Some(t), Some(d), _) => (t.clone(), parse_digest(d)?),
                (Some(_), None, _) => {
                    return Err(CliError::new("INVALID_ARGUMENT", "--tarball needs --sha256 <digest of the tarball>"))
                }
                (None, digest, Some(registry)) => {
                    let spinner = progress::spinner("resolving pack in registry", ctx.json);
                    let resolved = fetch::resolve_registry(registry, &a.id, &a.version);
                    spinner.finish_and_clear();
                    let resolved = resolved?;
                    let digest = match digest {
                        Some(d) => parse_digest(d)?,
                        None => resolved.sha256,
                    };
                    a.version = resolved.version;
                    (resolved.tarball_url, digest)
                }
                (None, _, None) => {
                    return Err(CliError::new(
                        "INVALID_ARGUMENT",
                        "--source registry needs --tarball <url|path> with --sha256, or --registry-url <url>",
                    ))
                }
            };
            let tarball = if location.starts_with("http://") || location.starts_with("https://") {
                let dest = download_dir
                    .path()
                    .join(format!("{}-{}.tar.gz", a.id, a.version));
                let spinner = progress::spinner("downloading tarball", ctx.json);
                let r = fetch::download(&location, &dest);
                spinner.finish_and_clear();
                r?;
                dest
            } else {
                PathBuf::from(location)
            };
            InstallSource::Registry {
                tarball,
                expected_sha256: digest,
                registry_url: a.registry_url.clone(),
            }
        }
    })
}

pub fn list(ctx: &Context) -> Result<(), CliError> {
    let builtin = lumenflow_packs::builtin_packs();
    let doc = match ctx.optional_workspace() {
        Some(_) => Some(ctx.workspace()?),
        None => None,
    };
    let mut rows = Vec::new();
    let mut human = String::new();
    if let Some(doc) = &doc {
        let loader = PackLoader::for_workspace(doc, builtin);
        human.push_str(&format!(
            "Pinned in {}:\n",
            display_path(&doc.dir.join("workspace.yaml"))
        ));
        if doc.spec.packs.is_empty() {
            human.push_str("  (none; add one with `lumenflow pack install`)\n");
        }
        for pin in &doc.spec.packs {
            let location = loader.locate(&pin.id);
            let status = match loader.load(&doc.spec, &pin.id) {
                Ok(p) if matches!(pin.integrity, Integrity::Dev) => {
                    let _ = p;
                    "ok (dev: not verified)".to_string()
                }
                Ok(_) => "ok (verified)".to_string(),
                Err(e @ LoadError::NotInstalled { .. }) => format!("not installed: {e}"),
                Err(e) => format!("{}: {e}", e.code()),
            };
            let where_ = location.as_ref().map(|l| match l {
                PackLocation::Dir(d) => display_path(d),
                PackLocation::Builtin(p) => format!("<built-in>/{}", p.id),
            });
            human.push_str(&format!(
                "  {}@{}  {}  {}\n    {}\n",
                pin.id,
                pin.version,
                pin.source.as_str(),
                where_.as_deref().unwrap_or("-"),
                status.lines().next().unwrap_or(""),
            ));
            rows.push(json!({
                "id": pin.id, "version": pin.version, "source": pin.source.as_str(),
                "integrity": pin.integrity.to_string(), "location": where_, "status": status,
            }));
        }
    }
    let builtins: Vec<_> = builtin
        .iter()
        .map(|p| {
            let version = lumenflow_kernel::loader::read_embedded_manifest(p)
                .map(|d| d.manifest.version)
                .unwrap_or_default();
            json!({"id": p.id, "version": version})
        })
        .collect();
    human.push_str("Built-in packs:\n");
    if builtins.is_empty() {
        human.push_str("  (none in this build)\n");
    }
    for b in &builtins {
        human.push_str(&format!(
            "  {}@{}\n",
            b["id"].as_str().unwrap_or(""),
            b["version"].as_str().unwrap_or("")
        ));
    }
    print_ok(
        ctx.json,
        &json!({"pinned": rows, "builtin": builtins}),
        &human,
    );
    Ok(())
}

/// Used by the demo: hash a folder without a progress bar.
pub fn hash_dir(root: &Path) -> Result<String, CliError> {
    integrity::compute_pack_hash(root)
        .map(|h| h.prefixed())
        .map_err(|e| CliError::new(e.code(), e.to_string()))
}
