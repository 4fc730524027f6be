//! Value rules of a manifest that serde's types cannot express (KRN-01).

use std::collections::HashSet;

use lumenflow_contracts::scope::{NetworkPosture, ToolScope};

use super::{ManifestDocument, PackManifest};
use crate::diagnostics::Diagnostics;
use crate::yaml::FieldPath;

const CODE: &str = "MANIFEST_INVALID";

/// `^[a-z][a-z0-9]*(-[a-z0-9]+)*$`: pack ids, slugs and authored names.
pub fn is_kebab_case(s: &str) -> bool {
    let mut chars = s.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
        return false;
    }
    s.split('-').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    })
}

/// The original's (deliberately loose) semver rule, so pins and manifests agree with it:
/// `^\d+\.\d+\.\d+(-[0-9A-Za-z-.]+)?(\+[0-9A-Za-z-.]+)?$`.
pub fn is_semver(s: &str) -> bool {
    let ident = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    let (rest, build) = match s.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (s, None),
    };
    if build.is_some_and(|b| !ident(b)) {
        return false;
    }
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    if pre.is_some_and(|p| !ident(p)) {
        return false;
    }
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// `^[A-Z][A-Z0-9_]*$`.
pub fn is_env_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A single workspace root key: letters, digits, `_` or `-`, not starting with a digit or `-`.
pub fn is_config_key(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A tool entry split at its first `#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub module: &'a str,
    pub export: Option<&'a str>,
}

/// Split `path[#export]` as the original does, refusing blank parts and absolute paths.
pub fn parse_entry(entry: &str) -> Result<EntryRef<'_>, String> {
    let (module, export) = match entry.split_once('#') {
        Some((m, e)) => (m, Some(e)),
        None => (entry, None),
    };
    if module.trim().is_empty() {
        return Err(format!("entry `{entry}` is missing a module path"));
    }
    if let Some(e) = export {
        if e.trim().is_empty() {
            return Err(format!("entry `{entry}` has an empty export fragment"));
        }
    }
    if module.starts_with('/') || module.starts_with('\\') || module.contains('\0') {
        return Err(format!(
            "entry `{entry}` must be a path relative to the pack root"
        ));
    }
    Ok(EntryRef { module, export })
}

/// Slugs a pack may not take: they name the runtime's own folders under `.lumenflow/state/`
/// (a pack's handlers may write `.lumenflow/state/<slug>/`) and its intrinsic event namespaces.
pub const RESERVED_SLUGS: &[&str] = &[
    "conductor",
    "kernel",
    "keys",
    "approvals",
    "evidence",
    "tasks",
    "tmp",
    "state",
    "emit",
    "proof",
];

/// The kernel's own `workspace.yaml` root keys; a pack may not claim one as its `config_key`.
pub const KERNEL_OWNED_ROOT_KEYS: &[&str] = &[
    "id",
    "name",
    "packs",
    "lanes",
    "policies",
    "security",
    "control_plane",
    "memory_namespace",
    "event_namespace",
    "sandbox",
];

/// Check every value rule; all violations are returned, in document order.
pub fn validate(doc: &ManifestDocument) -> Diagnostics {
    let mut out = Diagnostics::default();
    let m: &PackManifest = &doc.manifest;
    let root = FieldPath::root();
    let mut err = |path: FieldPath, message: String, help: Option<&str>| {
        let mut d = doc.diagnostic(CODE, &path, message);
        if let Some(h) = help {
            d = d.with_help(h);
        }
        out.push(d);
    };

    if !is_kebab_case(&m.id) {
        err(
            root.key("id"),
            format!("pack id `{}` must be kebab-case", m.id),
            Some("use lowercase letters and digits separated by single hyphens, starting with a letter (for example `customer-ops`)"),
        );
    }
    if !is_semver(&m.version) {
        err(
            root.key("version"),
            format!(
                "expected a semantic version such as `1.0.0`, found `{}`",
                m.version
            ),
            None,
        );
    }
    if let Some(slug) = &m.slug {
        if !is_kebab_case(slug) {
            err(
                root.key("slug"),
                format!("slug `{slug}` must be kebab-case"),
                None,
            );
        }
    }
    if RESERVED_SLUGS.contains(&m.slug()) {
        let field = if m.slug.is_some() { "slug" } else { "id" };
        err(
            root.key(field),
            format!(
                "`{}` is reserved for the runtime's own state (`.lumenflow/state/{}/`) and cannot be a pack's slug",
                m.slug(),
                m.slug()
            ),
            Some("choose another slug (it names the pack's event namespace and state folder)"),
        );
    }
    for (field, list) in [
        ("state_writers", &m.state_writers),
        ("state_folders", &m.state_folders),
    ] {
        for (i, slug) in list.iter().enumerate() {
            let problem = if !is_kebab_case(slug) {
                Some(format!("`{slug}` is not a kebab-case pack slug"))
            } else if RESERVED_SLUGS.contains(&slug.as_str()) {
                Some(format!(
                    "`{slug}` is the runtime's own state (`.lumenflow/state/{slug}/`); no pack may share it"
                ))
            } else if slug == m.slug() {
                Some(format!(
                    "`{slug}` is this pack's own slug; its state folder is always its own"
                ))
            } else {
                None
            };
            if let Some(message) = problem {
                err(root.key(field).index(i), message, None);
            }
        }
    }
    if let Some(d) = &m.description {
        if d.trim().is_empty() {
            err(
                root.key("description"),
                "description must not be empty".into(),
                None,
            );
        }
    }
    if m.task_types.is_empty() && !m.tools.is_empty() {
        err(
            root.key("task_types"),
            "a pack with tools needs at least one task type".into(),
            Some("list the task types the tools work on, for example `task_types: [work-unit]`"),
        );
    }
    non_empty_items(
        &m.task_types,
        &root.key("task_types"),
        "task type",
        &mut err,
    );
    non_empty_items(
        &m.evidence_types,
        &root.key("evidence_types"),
        "evidence type",
        &mut err,
    );
    for (k, v) in &m.state_aliases {
        if k.trim().is_empty() || v.trim().is_empty() {
            err(
                root.key("state_aliases").key(k.clone()),
                "state alias keys and values must not be empty".into(),
                None,
            );
        }
    }
    for (i, lane) in m.lane_templates.iter().enumerate() {
        let p = root.key("lane_templates").index(i);
        if lane.id.trim().is_empty() {
            err(
                p.key("id"),
                "lane template id must not be empty".into(),
                None,
            );
        }
        for (field, value) in [("title", &lane.title), ("description", &lane.description)] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                err(
                    p.key(field),
                    format!("{field} must not be empty when given"),
                    None,
                );
            }
        }
    }
    if let Some(key) = &m.config_key {
        if !is_config_key(key) {
            err(
                root.key("config_key"),
                format!("config_key `{key}` must be a single identifier (letters, digits, `_` or `-`, no dots)"),
                None,
            );
        } else if KERNEL_OWNED_ROOT_KEYS.contains(&key.as_str()) {
            err(
                root.key("config_key"),
                format!("config_key `{key}` is a kernel-owned workspace key and cannot belong to a pack"),
                None,
            );
        }
    }
    for (field, value) in [
        ("config_schema", &m.config_schema),
        ("capability_factory", &m.capability_factory),
        ("policy_factory", &m.policy_factory),
    ] {
        let Some(value) = value else { continue };
        if value.trim().is_empty() {
            err(
                root.key(field),
                format!("{field} must not be empty when given"),
                None,
            );
        } else if field != "config_schema" {
            if let Err(e) = parse_entry(value) {
                err(root.key(field), e, None);
            }
        }
    }

    let mut tool_names = HashSet::new();
    for (i, tool) in m.tools.iter().enumerate() {
        let p = root.key("tools").index(i);
        if tool.name.trim().is_empty() {
            err(p.key("name"), "tool name must not be empty".into(), None);
        } else if !tool_names.insert(tool.name.as_str()) {
            err(
                p.key("name"),
                format!("duplicate tool name `{}`", tool.name),
                None,
            );
        }
        if let Err(e) = parse_entry(&tool.entry) {
            err(
                p.key("entry"),
                e,
                Some("write `relative/path/to/file[#export]`"),
            );
        }
        if tool.required_scopes.is_empty() {
            err(
                p.key("required_scopes"),
                "a tool needs at least one required scope".into(),
                Some("declare the narrowest path or network scope the tool needs"),
            );
        }
        for (j, scope) in tool.required_scopes.iter().enumerate() {
            check_scope(scope, &p.key("required_scopes").index(j), &mut err);
        }
        for (j, name) in tool.required_env.iter().flatten().enumerate() {
            if !is_env_name(name) {
                err(
                    p.key("required_env").index(j),
                    format!("expected an uppercase environment variable name, found `{name}`"),
                    None,
                );
            }
        }
        if tool
            .description
            .as_deref()
            .is_some_and(|d| d.trim().is_empty())
        {
            err(
                p.key("description"),
                "description must not be empty when given".into(),
                None,
            );
        }
        non_empty_items(
            &tool.required_approvals,
            &p.key("required_approvals"),
            "approval id",
            &mut err,
        );
        if tool
            .token_scope
            .as_deref()
            .is_some_and(|s| s.trim().is_empty() || s.contains(' '))
        {
            err(
                p.key("token_scope"),
                "token_scope must be one non-empty scope name".into(),
                None,
            );
        }
    }

    let mut policy_ids = HashSet::new();
    for (i, policy) in m.policies.iter().enumerate() {
        let p = root.key("policies").index(i);
        if policy.id.trim().is_empty() {
            err(p.key("id"), "policy id must not be empty".into(), None);
        } else if !policy_ids.insert(policy.id.as_str()) {
            err(
                p.key("id"),
                format!("duplicate policy id `{}`", policy.id),
                None,
            );
        }
        if policy
            .reason
            .as_deref()
            .is_some_and(|r| r.trim().is_empty())
        {
            err(
                p.key("reason"),
                "reason must not be empty when given".into(),
                None,
            );
        }
        if let Some(when) = &policy.when {
            for problem in crate::policy::validate_condition(when, &p.key("when")) {
                err(problem.path, problem.message, problem.help);
            }
        }
    }

    non_empty_items(
        &m.emitted_event_kinds,
        &root.key("emitted_event_kinds"),
        "event kind",
        &mut err,
    );
    non_empty_items(
        &m.subscribed_event_kinds,
        &root.key("subscribed_event_kinds"),
        "event kind",
        &mut err,
    );
    non_empty_items(
        &m.required_approvals,
        &root.key("required_approvals"),
        "approval id",
        &mut err,
    );
    out
}

fn non_empty_items(
    items: &[String],
    path: &FieldPath,
    what: &str,
    err: &mut impl FnMut(FieldPath, String, Option<&str>),
) {
    for (i, item) in items.iter().enumerate() {
        if item.trim().is_empty() {
            err(path.index(i), format!("{what} must not be empty"), None);
        }
    }
}

fn check_scope(
    scope: &ToolScope,
    path: &FieldPath,
    err: &mut impl FnMut(FieldPath, String, Option<&str>),
) {
    match scope {
        ToolScope::Path { pattern, .. } => {
            if pattern.trim().is_empty() {
                err(
                    path.key("pattern"),
                    "scope pattern must not be empty".into(),
                    None,
                );
            }
        }
        ToolScope::Network {
            posture,
            allowlist_entries,
        } => {
            match allowlist_entries {
                Some(entries) if entries.is_empty() => err(
                    path.key("allowlist_entries"),
                    "allowlist_entries must not be empty when given".into(),
                    None,
                ),
                None if *posture == NetworkPosture::Allowlist => err(
                    path.clone(),
                    "allowlist_entries required when posture is allowlist".into(),
                    Some("list the `host:port` or CIDR destinations the tool may reach"),
                ),
                _ => {}
            }
            for (i, entry) in allowlist_entries.iter().flatten().enumerate() {
                if entry.trim().is_empty() {
                    err(
                        path.key("allowlist_entries").index(i),
                        "allowlist entry must not be empty".into(),
                        None,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_and_semver_follow_the_original() {
        assert!(is_kebab_case("customer-ops"));
        assert!(is_kebab_case("a1-b2"));
        for bad in ["Bad_Id", "-a", "a-", "a--b", "1a", ""] {
            assert!(!is_kebab_case(bad), "{bad}");
        }
        // The original's regex accepts loose forms such as leading zeros and dots in pre-release.
        for ok in ["1.0.0", "01.2.3-..", "1.2.3-rc.1+build.5"] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in ["1.0", "v1.0.0", "1.0.0-", "1.0.0 "] {
            assert!(!is_semver(bad), "{bad}");
        }
    }

    #[test]
    fn entries_split_at_the_first_hash() {
        assert_eq!(
            parse_entry("tool-impl/git.ts#gitStatus#x"),
            Ok(EntryRef {
                module: "tool-impl/git.ts",
                export: Some("gitStatus#x")
            })
        );
        assert!(parse_entry(" #x").is_err());
        assert!(parse_entry("a.ts#").is_err());
        assert!(parse_entry("/abs.ts").is_err());
    }
}
