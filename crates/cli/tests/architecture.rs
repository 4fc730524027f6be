//! The crate dependency graph must match the arrows in ARCHITECTURE.md (DESIGN.md's crate map):
//! an arrow the map forbids, such as the control plane depending on the kernel, cannot creep in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `crate -> allowed lumenflow-* dependencies`, from the marked block of ARCHITECTURE.md.
fn documented_rules() -> BTreeMap<String, BTreeSet<String>> {
    let text =
        std::fs::read_to_string(repo_root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = text
        .find("<!-- dependency-rules")
        .expect("dependency-rules block");
    let end = text
        .find("<!-- end dependency-rules -->")
        .expect("end of block");
    let mut rules = BTreeMap::new();
    for line in text[start..end].lines().filter(|l| l.starts_with("- ")) {
        let (from, to) = line[2..].split_once("->").expect("`a -> b, c` line");
        let name = from.trim().trim_matches('`').to_string();
        let allowed: BTreeSet<String> = to
            .split(',')
            .map(|s| s.trim().trim_matches('`').to_string())
            .filter(|s| s.starts_with("lumenflow-"))
            .collect();
        rules.insert(name, allowed);
    }
    rules
}

/// `crate -> lumenflow-* dependencies` (normal, build and dev: a test-only arrow is still an arrow).
fn actual_graph() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut graph = BTreeMap::new();
    for pkg in meta["packages"].as_array().expect("packages") {
        let name = pkg["name"].as_str().expect("name").to_string();
        let deps: BTreeSet<String> = pkg["dependencies"]
            .as_array()
            .expect("deps")
            .iter()
            .filter_map(|d| d["name"].as_str())
            .filter(|n| n.starts_with("lumenflow-"))
            .map(str::to_string)
            .collect();
        graph.insert(name, deps);
    }
    graph
}

#[test]
fn crate_graph_matches_architecture_md() {
    let rules = documented_rules();
    let graph = actual_graph();
    assert_eq!(
        rules.keys().collect::<Vec<_>>(),
        graph.keys().collect::<Vec<_>>(),
        "ARCHITECTURE.md must list exactly the workspace crates"
    );
    let mut violations = Vec::new();
    for (krate, deps) in &graph {
        for dep in deps.difference(&rules[krate]) {
            violations.push(format!(
                "{krate} depends on {dep}, which ARCHITECTURE.md does not allow"
            ));
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_map_itself_keeps_the_binding_decisions() {
    // DESIGN.md: the cloud crate speaks only the wire contracts, never the kernel; the contracts
    // crate depends on nothing of ours; the kernel knows no particular pack.
    let rules = documented_rules();
    assert!(!rules["lumenflow-cloud"].contains("lumenflow-kernel"));
    assert!(!rules["lumenflow-cloud"].contains("lumenflow-packs"));
    assert!(rules["lumenflow-contracts"].is_empty());
    assert!(!rules["lumenflow-kernel"].contains("lumenflow-packs"));
}
