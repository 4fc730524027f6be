//! KRN-05: the import-boundary scan for script packs (`original/packs.md` §3.3), with the bare
//! allow-list configurable.

// Tests: a failed unwrap is a failed test, with the error in the panic message.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use lumenflow_kernel::import_scan::{
    is_scanned_path, scan_pack_imports, ImportViolation, ImportViolationKind,
    DEFAULT_BARE_IMPORT_ALLOWLIST, NODE_BUILTIN_MODULES,
};
use lumenflow_kernel::integrity::{list_pack_files, DEFAULT_EXCLUSIONS};

use ImportViolationKind::{BarePackage, DisallowedLumenflowPackage, OutsidePackRoot};

fn default_allowlist() -> Vec<String> {
    DEFAULT_BARE_IMPORT_ALLOWLIST
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

/// Writes the files into a fresh pack, scans it and returns the violations.
fn scan_with(files: &[(&str, &str)], allowlist: &[String]) -> Vec<ImportViolation> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pack");
    fs::create_dir_all(&root).unwrap();
    for (rel, content) in files {
        write(&root, rel, content);
    }
    let listed = list_pack_files(&root, DEFAULT_EXCLUSIONS).unwrap();
    scan_pack_imports(&listed, allowlist).unwrap()
}

/// The one place tests call the scan: a single file `tools/tool.ts` with `source`, expecting
/// exactly `expected` as `(line, specifier, kind)`.
fn check(source: &str, expected: &[(usize, &str, ImportViolationKind)]) {
    check_file("tools/tool.ts", source, expected);
}

fn check_file(rel: &str, source: &str, expected: &[(usize, &str, ImportViolationKind)]) {
    let violations = scan_with(&[(rel, source)], &default_allowlist());
    let got: Vec<(usize, &str, ImportViolationKind)> = violations
        .iter()
        .map(|v| (v.line, v.specifier.as_str(), v.kind))
        .collect();
    assert_eq!(got, expected, "source:\n{source}");
    assert!(violations.iter().all(|v| v.file == rel));
}

// ---------------------------------------------------------------------------------------------
// The original's vectors (KRN-05, packs.md §3.3 and §7.8)

#[test]
fn krn05_original_rejections() {
    check("import _ from \"lodash\";", &[(1, "lodash", BarePackage)]);
    check(
        "import { x } from \"@lumenflow/kernel-utils\";",
        &[(1, "@lumenflow/kernel-utils", DisallowedLumenflowPackage)],
    );
    check(
        "import \"../../../../../workspace/secrets.ts\";",
        &[(1, "../../../../../workspace/secrets.ts", OutsidePackRoot)],
    );
    check(
        "import x from '/etc/passwd';",
        &[(1, "/etc/passwd", OutsidePackRoot)],
    );
    check(
        "import { y } from '@lumenflow/core';",
        &[(1, "@lumenflow/core", DisallowedLumenflowPackage)],
    );
}

#[test]
fn krn05_original_acceptances() {
    check(
        "import fs from 'node:fs';\n\
         import { readFile } from 'fs';\n\
         import { readFile as r } from 'fs/promises';\n\
         import * as cp from 'child_process';\n\
         import net from 'net';\n\
         import { kernel } from '@lumenflow/kernel';\n\
         import { x } from '@lumenflow/kernel/x';\n\
         import git from 'simple-git';\n\
         import local from './local.js';\n\
         import up from '../manifest-helpers.js';\n\
         import dot from '.';\n\
         import hidden from './.hidden.js';\n\
         import weird from 'node:anything-at-all';\n",
        &[],
    );
}

#[test]
fn krn05_messages_are_the_originals() {
    let violations = scan_with(
        &[(
            "tools/a.ts",
            "import _ from 'lodash';\nimport u from '@lumenflow/kernel-utils';\nimport s from '../../x';\n",
        )],
        &default_allowlist(),
    );
    let messages: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "Bare package import \"lodash\" in tools/a.ts is not allowed; only relative imports, @lumenflow/kernel, and Node built-ins are permitted.",
            "Import \"@lumenflow/kernel-utils\" in tools/a.ts is not allowed; only @lumenflow/kernel and Node built-ins are permitted.",
            "Import \"../../x\" in tools/a.ts resolves outside pack root.",
        ]
    );
    assert!(messages[0].contains("Bare package import"));
    assert!(messages[1].contains("@lumenflow/kernel and Node built-ins are permitted"));
    assert!(messages[2].contains("outside pack root"));
    assert_eq!(violations[2].kind.code(), "IMPORT_OUTSIDE_PACK_ROOT");
}

#[test]
fn krn05_node_builtins_are_the_pinned_node20_list() {
    assert_eq!(NODE_BUILTIN_MODULES.len(), 68);
    let source: String = NODE_BUILTIN_MODULES
        .iter()
        .map(|m| format!("import x from '{m}';\n"))
        .collect();
    check(&source, &[]);
    // Not built-ins: subpaths that Node does not list, and `node:`-less lookalikes.
    check(
        "import a from 'fs/extra';\nimport b from 'test';\nimport c from 'sqlite';\n",
        &[
            (1, "fs/extra", BarePackage),
            (2, "test", BarePackage),
            (3, "sqlite", BarePackage),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Relative resolution (KRN-05, rule 6)

#[test]
fn krn05_relative_imports_resolve_lexically_against_the_importing_file() {
    check_file(
        "tools/deep/a.ts",
        "import a from '../../manifest.js';\nimport b from '../../../x.js';\nimport c from './../../../y.js';\nimport d from '../sibling/./x.js';\n",
        &[
            (2, "../../../x.js", OutsidePackRoot),
            (3, "./../../../y.js", OutsidePackRoot),
        ],
    );
    check_file(
        "top.ts",
        "import a from '..';\nimport b from './';\nimport c from '../x';\n",
        &[(1, "..", OutsidePackRoot), (3, "../x", OutsidePackRoot)],
    );
}

#[test]
fn krn05_climbing_out_and_back_into_the_root_is_inside() {
    // `path.resolve` semantics: `../pack/x.js` from a top-level file of a root named `pack`
    // lands inside the root again.
    check_file("top.ts", "import a from '../pack/x.js';", &[]);
    check_file(
        "top.ts",
        "import a from '../other/x.js';",
        &[(1, "../other/x.js", OutsidePackRoot)],
    );
}

// ---------------------------------------------------------------------------------------------
// Extraction behaviours verified against Node (KRN-05, packs.md §3.3)

#[test]
fn krn05_extraction_forms() {
    check(
        "import a from 'default-import';\n\
         import { b, c } from \"named-import\";\n\
         import * as d from 'namespace-import';\n\
         import type { E } from 'type-import';\n\
         import 'side-effect';\n\
         export * from 'star-export';\n\
         export { f } from 'named-export';\n\
         const g = await import('dynamic');\n\
         const h = await import( \"dynamic-spaced\" );\n",
        &[
            (1, "default-import", BarePackage),
            (2, "named-import", BarePackage),
            (3, "namespace-import", BarePackage),
            (4, "type-import", BarePackage),
            (5, "side-effect", BarePackage),
            (6, "star-export", BarePackage),
            (7, "named-export", BarePackage),
            (8, "dynamic", BarePackage),
            (9, "dynamic-spaced", BarePackage),
        ],
    );
}

#[test]
fn krn05_multi_line_named_import_reports_the_specifier_line() {
    check(
        "// header\n\nimport {\n  a,\n  b,\n} from 'multi-line';\n",
        &[(6, "multi-line", BarePackage)],
    );
}

#[test]
fn krn05_forms_the_original_does_not_catch() {
    check(
        "const a = require('lodash');\n\
         const b = await import(name);\n\
         const c = await import(`lodash`);\n\
         import {a}from'lodash';\n\
         import x from `lodash`;\n",
        &[],
    );
}

#[test]
fn krn05_comments_and_strings_are_scanned() {
    check(
        "// import foo from 'in-comment';\nconst s = \"import 'in-string'\";\n/* export * from 'in-block' */\n",
        &[
            (1, "in-comment", BarePackage),
            (2, "in-string", BarePackage),
            (3, "in-block", BarePackage),
        ],
    );
}

#[test]
fn krn05_javascript_whitespace_class() {
    // JavaScript's `\s` includes U+FEFF and excludes U+0085.
    check(
        "import\u{FEFF}'bom-space';",
        &[(1, "bom-space", BarePackage)],
    );
    check("import\u{85}'nel-space';", &[]);
    check(
        "import\u{3000}x from\u{A0}'ideographic';",
        &[(1, "ideographic", BarePackage)],
    );
}

#[test]
fn krn05_specifiers_are_deduplicated_per_file_keeping_the_first_line() {
    check(
        "import a from 'lodash';\nimport { b } from 'lodash';\nexport * from 'lodash';\nimport('lodash');\n",
        &[(1, "lodash", BarePackage)],
    );
    // ... but not across files.
    let violations = scan_with(
        &[("a.ts", "import 'lodash';"), ("b.ts", "\nimport 'lodash';")],
        &default_allowlist(),
    );
    let got: Vec<_> = violations
        .iter()
        .map(|v| (v.file.as_str(), v.line))
        .collect();
    assert_eq!(got, [("a.ts", 1), ("b.ts", 2)]);
}

#[test]
fn krn05_violations_are_in_file_then_position_order() {
    let violations = scan_with(
        &[
            ("z.ts", "import 'zz';"),
            ("B.ts", "export * from 'b2';\nimport 'b1';\nimport('b0');"),
            ("a/x.js", "import '@lumenflow/cli';"),
        ],
        &default_allowlist(),
    );
    let got: Vec<_> = violations
        .iter()
        .map(|v| (v.file.as_str(), v.line, v.specifier.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("B.ts", 1, "b2"),
            ("B.ts", 2, "b1"),
            ("B.ts", 3, "b0"),
            ("a/x.js", 1, "@lumenflow/cli"),
            ("z.ts", 1, "zz"),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Configurable allow-list (KRN-05 "better")

#[test]
fn krn05_bare_allowlist_is_configurable() {
    let source = [(
        "tools/a.ts",
        "import _ from 'lodash';\nimport git from 'simple-git';\n",
    )];
    let with_lodash = vec!["simple-git".to_owned(), "lodash".to_owned()];
    assert!(scan_with(&source, &with_lodash).is_empty());

    let only_lodash = vec!["lodash".to_owned()];
    let violations = scan_with(&source, &only_lodash);
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].specifier, "simple-git");
    assert_eq!(violations[0].line, 2);

    // Exact names only, as in the original, and the allow-list cannot admit @lumenflow packages.
    let violations = scan_with(
        &[(
            "a.ts",
            "import fp from 'lodash/fp';\nimport u from '@lumenflow/kernel-utils';",
        )],
        &["lodash".to_owned(), "@lumenflow/kernel-utils".to_owned()],
    );
    let kinds: Vec<_> = violations.iter().map(|v| v.kind).collect();
    assert_eq!(kinds, [BarePackage, DisallowedLumenflowPackage]);
}

// ---------------------------------------------------------------------------------------------
// Which files are scanned (KRN-05, packs.md §3.3 "Files scanned")

#[test]
fn krn05_scanned_file_kinds() {
    let bad = "import 'lodash';";
    let files = [
        // scanned
        "a.ts",
        "a.tsx",
        "a.mts",
        "a.cts",
        "a.js",
        "a.mjs",
        "a.cjs",
        "types.d.ts",
        "__tests__/top-level.ts",
        "configure.ts",
        "test.ts",
        // not scanned
        "a.jsx",
        "README.md",
        "a.ts.bak",
        "src/__tests__/x.ts",
        "vitest.config.ts",
        "eslint.config.mjs",
        "x.config.cjs",
        "a.test.ts",
        "a.spec.js",
        "a.test.tsx",
        "node_modules/dep/index.js",
        "dist/out.js",
    ];
    let pack: Vec<(&str, &str)> = files.iter().map(|f| (*f, bad)).collect();
    let violations = scan_with(&pack, &default_allowlist());
    let scanned: Vec<&str> = violations.iter().map(|v| v.file.as_str()).collect();
    assert_eq!(
        scanned,
        [
            "__tests__/top-level.ts",
            "a.cjs",
            "a.cts",
            "a.js",
            "a.mjs",
            "a.mts",
            "a.ts",
            "a.tsx",
            "configure.ts",
            "test.ts",
            "types.d.ts",
        ]
    );
    assert!(is_scanned_path("tools/x.d.ts"));
    assert!(!is_scanned_path("tools/x.jsx"));
    assert!(!is_scanned_path("pkg/__tests__/x.ts"));
}

#[test]
fn krn05_non_utf8_source_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("bad.ts"), b"import 'x';\xff\xfe").unwrap();
    fs::write(root.join("bad.bin"), b"\xff\xfe").unwrap();
    let listed = list_pack_files(root, DEFAULT_EXCLUSIONS).unwrap();
    let err = scan_pack_imports(&listed, &default_allowlist()).unwrap_err();
    assert_eq!(err.code(), "SOURCE_NOT_UTF8");
    assert_eq!(
        err.to_string(),
        "`bad.ts` is not valid UTF-8; pack source files must be UTF-8 text"
    );
}

#[test]
fn krn05_fixture_pack_f_is_clean() {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/packs/vectors/f-loader-fixture");
    let listed = list_pack_files(&root, DEFAULT_EXCLUSIONS).unwrap();
    assert!(scan_pack_imports(&listed, &default_allowlist())
        .unwrap()
        .is_empty());
}
