//! KRN-07 scope intersection: the original's conformance table (`original/dispatch.md` §1.7), the
//! S4 example, the `contains` vectors, each deliberate difference, KRN-10's reserved writes, and
//! the properties (commutative, never wider than a layer, associative where that can hold).

// One module, so that `cargo test --test scope_intersection scope` selects every test here.
mod scope {
    use std::collections::BTreeSet;

    use lumenflow_contracts::scope::{NetworkPosture, PathAccess, ToolScope};
    use lumenflow_kernel::scope::{
        check_path, glob_contains, glob_matches, glob_overlaps, intersect, is_reserved_write_path,
        narrowest, narrowness_score, reserved_write_scopes, AllowEntry, EffectiveScopes,
        NetworkGrant, PathGlob, PathRefusal, ScopeError, ScopeLayer, ScopeLayers,
    };
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;

    // ---------------------------------------------------------------------------------------------
    // Builders and the one `check` helper.

    fn r(pattern: &str) -> ToolScope {
        ToolScope::path(pattern, PathAccess::Read)
    }

    fn w(pattern: &str) -> ToolScope {
        ToolScope::path(pattern, PathAccess::Write)
    }

    fn net(posture: NetworkPosture) -> ToolScope {
        ToolScope::Network {
            posture,
            allowlist_entries: None,
        }
    }

    fn full() -> ToolScope {
        net(NetworkPosture::Full)
    }

    fn off() -> ToolScope {
        net(NetworkPosture::Off)
    }

    fn allow(entries: &[&str]) -> ToolScope {
        ToolScope::Network {
            posture: NetworkPosture::Allowlist,
            allowlist_entries: Some(entries.iter().map(|e| e.to_string()).collect()),
        }
    }

    const NPM: &str = "registry.npmjs.org:443";
    const GITHUB: &str = "api.github.com:443";
    const PYPI: &str = "pypi.org:443";

    /// Expected network part.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Net {
        None,
        Off,
        Full,
        Allow(&'static [&'static str]),
    }

    #[derive(Debug, Clone, Copy)]
    struct Expect {
        read: &'static [&'static str],
        write: &'static [&'static str],
        network: Net,
        narrowed: bool,
    }

    const EMPTY: Expect = Expect {
        read: &[],
        write: &[],
        network: Net::None,
        narrowed: true,
    };

    fn layers<'a>(l: &'a [Vec<ToolScope>; 4]) -> ScopeLayers<'a> {
        ScopeLayers {
            workspace: &l[0],
            lane: &l[1],
            task: &l[2],
            tool: &l[3],
        }
    }

    /// The only place the table tests call `intersect`.
    fn check(l: [Vec<ToolScope>; 4], expect: Expect) -> EffectiveScopes {
        let got = intersect(&layers(&l)).unwrap_or_else(|e| panic!("intersect failed: {e}"));
        assert_eq!(got.read, expect.read, "read, for {l:?}");
        assert_eq!(got.write, expect.write, "write, for {l:?}");
        let network = match &got.network {
            None => "none".to_string(),
            Some(NetworkGrant::Off) => "off".to_string(),
            Some(NetworkGrant::Full) => "full".to_string(),
            Some(NetworkGrant::Allowlist(entries)) => format!(
                "allow{:?}",
                entries.iter().map(ToString::to_string).collect::<Vec<_>>()
            ),
        };
        let want = match expect.network {
            Net::None => "none".to_string(),
            Net::Off => "off".to_string(),
            Net::Full => "full".to_string(),
            Net::Allow(entries) => format!("allow{entries:?}"),
        };
        assert_eq!(network, want, "network, for {l:?}");
        assert_eq!(
            got.narrowed, expect.narrowed,
            "narrowed, for {l:?} (notes {:?})",
            got.notes
        );
        assert_eq!(
            got.narrowed,
            !got.notes.is_empty(),
            "a note for every narrowing: {:?}",
            got.notes
        );
        assert_eq!(
            got.is_empty(),
            expect.read.is_empty() && expect.write.is_empty() && expect.network == Net::None
        );
        got
    }

    fn has_note(got: &EffectiveScopes, needle: &str) -> bool {
        got.notes.iter().any(|n| n.contains(needle))
    }

    // ---------------------------------------------------------------------------------------------
    // KRN-07: the original's table (`original/dispatch.md` §1.7), rows 1 to 12.

    struct Case {
        id: &'static str,
        layers: [Vec<ToolScope>; 4],
        expect: Expect,
        /// Where we differ from the original, and why.
        differs: Option<&'static str>,
    }

    fn original_table() -> Vec<Case> {
        vec![
        Case {
            id: "1 narrowest of broader/narrower: task pattern",
            layers: [
                vec![r("packages/**")],
                vec![r("packages/@lumenflow/**")],
                vec![r("packages/@lumenflow/kernel/src/tool-host/**")],
                vec![r("packages/@lumenflow/kernel/src/**")],
            ],
            expect: Expect {
                read: &["packages/@lumenflow/kernel/src/tool-host/**"],
                write: &[],
                network: Net::None,
                narrowed: true,
            },
            differs: Some("`narrowed` is new: the tool asked for all of `kernel/src/**`"),
        },
        Case {
            id: "2 read and write intersected independently",
            layers: [
                vec![r("docs/**"), w("packages/**")],
                vec![r("docs/**"), w("packages/@lumenflow/kernel/**")],
                vec![r("docs/tasks/**"), w("packages/@lumenflow/kernel/src/**")],
                vec![
                    r("docs/**"),
                    w("packages/@lumenflow/kernel/src/tool-host/**"),
                ],
            ],
            expect: Expect {
                read: &["docs/tasks/**"],
                write: &["packages/@lumenflow/kernel/src/tool-host/**"],
                network: Net::None,
                narrowed: true,
            },
            differs: None,
        },
        Case {
            id: "3 task off kills network; no path scope below the workspace",
            layers: [
                vec![r("packages/**"), full()],
                vec![full()],
                vec![off()],
                vec![full()],
            ],
            expect: EMPTY,
            differs: None,
        },
        Case {
            id: "4 wildcard chain: exactly the tool's pattern",
            layers: [
                vec![r("packages/**")],
                vec![r("packages/@lumenflow/**")],
                vec![r("packages/@lumenflow/kernel/**")],
                vec![r("packages/@lumenflow/kernel/src/**")],
            ],
            expect: Expect {
                read: &["packages/@lumenflow/kernel/src/**"],
                write: &[],
                network: Net::None,
                narrowed: false,
            },
            differs: None,
        },
        Case {
            id: "5 an empty layer",
            layers: [
                vec![r("packages/**")],
                vec![],
                vec![r("packages/@lumenflow/**")],
                vec![r("packages/@lumenflow/kernel/**")],
            ],
            expect: EMPTY,
            differs: None,
        },
        Case {
            id: "6 disjoint",
            layers: [
                vec![r("docs/**")],
                vec![r("docs/**")],
                vec![r("docs/tasks/**")],
                vec![r("packages/**")],
            ],
            expect: EMPTY,
            differs: None,
        },
        Case {
            id: "7a lane mismatch",
            layers: [
                vec![r("packages/**")],
                vec![r("docs/**")],
                vec![r("packages/@lumenflow/**")],
                vec![r("packages/**")],
            ],
            expect: EMPTY,
            differs: None,
        },
        Case {
            id: "7b task mismatch",
            layers: [
                vec![r("packages/**")],
                vec![r("packages/@lumenflow/**")],
                vec![r("docs/**")],
                vec![r("packages/**")],
            ],
            expect: EMPTY,
            differs: None,
        },
        Case {
            id: "7c pairwise check fails",
            layers: [
                vec![r("packages/a/**")],
                vec![r("packages/*/src/**")],
                vec![r("packages/b/src/**")],
                vec![r("packages/**")],
            ],
            expect: EMPTY,
            differs: None,
        },
        Case {
            id: "8 all full",
            layers: [vec![full()], vec![full()], vec![full()], vec![full()]],
            expect: Expect {
                read: &[],
                write: &[],
                network: Net::Full,
                narrowed: false,
            },
            differs: None,
        },
        Case {
            id: "9 allowlist common subset",
            layers: [
                vec![allow(&[NPM, GITHUB, PYPI])],
                vec![allow(&[NPM, GITHUB])],
                vec![allow(&[NPM, GITHUB])],
                vec![allow(&[NPM])],
            ],
            expect: Expect {
                read: &[],
                write: &[],
                network: Net::Allow(&[NPM]),
                narrowed: false,
            },
            differs: None,
        },
        Case {
            id: "10 no common host",
            layers: [
                vec![allow(&[NPM])],
                vec![allow(&[GITHUB])],
                vec![allow(&[NPM])],
                vec![allow(&[NPM])],
            ],
            expect: EMPTY,
            differs: None,
        },
        Case {
            id: "11 workspace full narrowed by the lane's allowlist",
            layers: [
                vec![full()],
                vec![allow(&[NPM])],
                vec![allow(&[NPM])],
                vec![allow(&[NPM])],
            ],
            expect: Expect {
                read: &[],
                write: &[],
                network: Net::Allow(&[NPM]),
                narrowed: false,
            },
            differs: Some(
                "unchanged: the tool asks for an allowlist, which every layer grants; the denial \
                 applies to a tool asking for `full` (case 11b below)",
            ),
        },
        Case {
            id: "12 off blocks allowlist",
            layers: [
                vec![allow(&[NPM])],
                vec![off()],
                vec![allow(&[NPM])],
                vec![allow(&[NPM])],
            ],
            expect: EMPTY,
            differs: None,
        },
    ]
    }

    // KRN-07
    #[test]
    fn original_table_is_a_conformance_test() {
        let table = original_table();
        assert_eq!(table.len(), 14, "rows 1 to 12 with 7a to 7c");
        for case in table {
            eprintln!("case {} (differs: {:?})", case.id, case.differs);
            check(case.layers, case.expect);
        }
    }

    // KRN-07, deliberate difference 4: the original silently downgraded a tool's `full` to the
    // layers' common allowlist.
    #[test]
    fn case_11b_full_under_an_allowlist_is_denied() {
        for workspace in [vec![allow(&[NPM])], vec![full()]] {
            let got = check(
                [
                    workspace,
                    vec![allow(&[NPM])],
                    vec![allow(&[NPM])],
                    vec![full()],
                ],
                EMPTY,
            );
            assert!(
                has_note(&got, "full network requested under an allowlist"),
                "{:?}",
                got.notes
            );
        }
        // The path part still runs; only the network request is lost.
        let got = check(
            [
                vec![r("src/**"), allow(&[NPM])],
                vec![r("src/**"), full()],
                vec![r("src/**"), full()],
                vec![r("src/**"), full()],
            ],
            Expect {
                read: &["src/**"],
                write: &[],
                network: Net::None,
                narrowed: true,
            },
        );
        assert!(has_note(&got, "full network requested under an allowlist"));
    }

    // KRN-07: the S4 example of the pack-authoring guide.
    #[test]
    fn s4_example_yields_the_lane_pattern() {
        let got = check(
            [
                vec![r("**")],
                vec![r("packages/@app/core/**")],
                vec![r("packages/@app/core/**")],
                vec![r("**")],
            ],
            Expect {
                read: &["packages/@app/core/**"],
                write: &[],
                network: Net::None,
                narrowed: true,
            },
        );
        assert!(has_note(
            &got,
            "tool scope `**` (read) narrowed to `packages/@app/core/**`"
        ));
        assert_eq!(
            got.as_tool_scopes(),
            vec![r("packages/@app/core/**")],
            "the wire form"
        );
        assert!(got.allows_path("packages/@app/core/src/index.ts", PathAccess::Read));
        assert!(!got.allows_path("packages/@app/other/x.ts", PathAccess::Read));
        assert!(!got.allows_path("packages/@app/core/x.ts", PathAccess::Write));
    }

    // KRN-07: results are deduplicated keeping the first insertion; reads come before writes.
    #[test]
    fn dedupe_and_order() {
        let got = check(
            [
                vec![r("src/**"), r("docs/**"), w("out/**")],
                vec![r("**"), w("**")],
                vec![r("**"), w("out/**")],
                vec![r("src/**"), r("**"), r("docs/**"), w("out/**")],
            ],
            Expect {
                read: &["src/**", "docs/**"],
                write: &["out/**"],
                network: Net::None,
                narrowed: true,
            },
        );
        assert_eq!(
            got.as_tool_scopes(),
            vec![r("src/**"), r("docs/**"), w("out/**")]
        );
    }

    // ---------------------------------------------------------------------------------------------
    // `contains`, `overlap`, `narrowest` vectors.

    // KRN-07: the original's 19 `contains` edge cases (`scope-intersection.fuzz.test.ts`).
    #[test]
    fn contains_vectors() {
        let vectors: &[(&str, &str, bool)] = &[
            ("**/foo", "bar/foo", true),
            ("**/foo", "a/b/c/foo", true),
            ("foo/**", "foo/bar", true),
            ("foo/**", "foo/bar/baz", true),
            ("foo/bar", "baz/qux", false),
            ("packages/**", "packages/foo/bar/**", true),
            ("foo/*", "foo/bar", true),
            ("foo/*", "foo/bar/baz", false),
            ("*", "foo", true),
            ("**", "foo", true),
            ("**", "foo/bar", true),
            ("[ab]", "a", true),
            ("[ab]", "b", true),
            ("[ab]", "c", false),
            ("{foo,bar}", "foo", true),
            ("{foo,bar}", "bar", true),
            ("{foo,bar}", "baz", false),
            ("**", "{foo,bar}", true),
            ("!foo", "foo", false),
        ];
        assert_eq!(vectors.len(), 19);
        for (container, nested, want) in vectors {
            assert_eq!(
                glob_contains(container, nested),
                *want,
                "contains({container}, {nested})"
            );
        }
    }

    // KRN-07: the overlap results the original verified (§1.4), and `narrowest`.
    #[test]
    fn overlap_vectors() {
        for (a, b, want) in [
            ("packages/a/**", "packages/*/src/**", false),
            ("src/**/*.ts", "src/kernel/**", false),
            ("docs/**", "docs/tasks/**", true),
            ("*.md", "README.md", true),
            ("src/*.ts", "src/**", true),
            ("src/**", "src/**", true),
            ("!src/**", "!src/**", false),
        ] {
            assert_eq!(glob_overlaps(a, b), want, "overlap({a}, {b})");
            assert_eq!(glob_overlaps(b, a), want, "overlap({b}, {a})");
        }
        assert_eq!(narrowest(&["src/*.ts", "src/**"]), "src/*.ts");
        assert_eq!(narrowest(&["src/**", "src/*.ts"]), "src/*.ts");
        assert_eq!(narrowest(&["a/**", "b/**"]), "a/**", "ties keep the first");
        assert_eq!(narrowness_score("**"), -10);
        assert_eq!(narrowness_score("{a,b}/[x]?"), 5);
    }

    // ---------------------------------------------------------------------------------------------
    // Deliberate differences.

    // KRN-07, difference 1: `**` covers dot-directories (the original needed `.github/**` granted
    // explicitly: `**` did not overlap it), and `foo/**` matches `foo`.
    #[test]
    fn globstar_covers_dot_directories() {
        assert!(glob_overlaps("**", ".github/**"));
        assert!(glob_contains("**", ".github/**"));
        assert!(glob_contains("packages/**", "packages/.hidden/**"));
        assert!(glob_matches("*", ".env"));
        let l = [
            vec![r("**")],
            vec![r("**")],
            vec![r(".github/**")],
            vec![r(".github/**")],
        ];
        check(
            l.clone(),
            Expect {
                read: &[".github/**"],
                write: &[],
                network: Net::None,
                narrowed: false,
            },
        );
        assert_eq!(
            check_path(&layers(&l), ".github/workflows/ci.yml", PathAccess::Read),
            Ok(())
        );
        assert_eq!(
            check_path(&layers(&l), ".github", PathAccess::Read),
            Ok(()),
            "`.github/**` matches `.github` itself"
        );
        let docs = [
            vec![r("docs/**")],
            vec![r("docs/**")],
            vec![r("docs/**")],
            vec![r("docs/**")],
        ];
        assert_eq!(check_path(&layers(&docs), "docs", PathAccess::Read), Ok(()));
        assert!(check_path(&layers(&docs), "docsx/a", PathAccess::Read).is_err());
    }

    // KRN-07, difference 2: a concrete path must match a pattern of every layer.
    #[test]
    fn check_path_needs_every_layer() {
        let l = [
            vec![r("docs/**"), w("out/**")],
            vec![r("docs/**"), w("out/**")],
            vec![r("docs/tasks/**"), w("out/reports/**")],
            vec![r("**"), w("out/**")],
        ];
        let l = layers(&l);
        assert_eq!(check_path(&l, "docs/tasks/a.md", PathAccess::Read), Ok(()));
        assert_eq!(
            check_path(&l, "docs/readme.md", PathAccess::Read),
            Err(PathRefusal::NotInLayer {
                layer: ScopeLayer::Task,
                access: PathAccess::Read
            })
        );
        assert_eq!(
            check_path(&l, "src/main.rs", PathAccess::Read),
            Err(PathRefusal::NotInLayer {
                layer: ScopeLayer::Workspace,
                access: PathAccess::Read
            })
        );
        assert_eq!(
            check_path(&l, "out/reports/x.md", PathAccess::Write),
            Ok(())
        );
        assert_eq!(
            check_path(&l, "docs/tasks/a.md", PathAccess::Write),
            Err(PathRefusal::NotInLayer {
                layer: ScopeLayer::Workspace,
                access: PathAccess::Write
            }),
            "a read grant never satisfies a write"
        );
        assert_eq!(
            check_path(&l, "./docs//tasks/./a.md", PathAccess::Read),
            Ok(()),
            "`.` and empty segments are dropped"
        );
    }

    // KRN-07: lexical refusals, no symlink resolution needed to catch them.
    #[test]
    fn check_path_refuses_escapes() {
        let l = [vec![r("**")], vec![r("**")], vec![r("**")], vec![r("**")]];
        let l = layers(&l);
        for (path, refusal) in [
            ("../secrets", PathRefusal::ParentSegment),
            ("docs/../../etc/passwd", PathRefusal::ParentSegment),
            ("docs/..", PathRefusal::ParentSegment),
            ("./..", PathRefusal::ParentSegment),
            ("/etc/passwd", PathRefusal::Absolute),
            ("C:/Windows", PathRefusal::Absolute),
            ("..\\secrets", PathRefusal::Backslash),
            ("docs\0x", PathRefusal::Nul),
            ("", PathRefusal::Empty),
            ("./", PathRefusal::Empty),
        ] {
            assert_eq!(
                check_path(&l, path, PathAccess::Read),
                Err(refusal),
                "{path:?}"
            );
            assert_eq!(
                check_path(&l, path, PathAccess::Read)
                    .err()
                    .map(|e| e.code()),
                Some("SCOPE_DENIED")
            );
        }
        let everything = EffectiveScopes {
            read: vec!["**".into()],
            ..EffectiveScopes::default()
        };
        assert!(!everything.allows_path("../x", PathAccess::Read));
        assert!(!everything.allows_path("/x", PathAccess::Read));
        assert!(everything.allows_path("x/.y", PathAccess::Read));
    }

    // KRN-07, difference 3: partial loss is reported with a note per lost scope.
    #[test]
    fn partial_loss_sets_narrowed_with_notes() {
        let got = check(
            [
                vec![r("src/**"), full()],
                vec![r("src/**"), full()],
                vec![r("src/**"), off()],
                vec![r("src/**"), r("docs/**"), w("out/**"), full()],
            ],
            Expect {
                read: &["src/**"],
                write: &[],
                network: Net::None,
                narrowed: true,
            },
        );
        assert!(has_note(
            &got,
            "tool scope `docs/**` (read) was lost: no workspace read scope overlaps it"
        ));
        assert!(has_note(
            &got,
            "tool scope `out/**` (write) was lost: the workspace layer grants no write path scope"
        ));
        assert!(has_note(&got, "network: the task layer allows only `off`"));
        assert_eq!(got.notes.len(), 3, "{:?}", got.notes);
        // A tool that asks only for `off` loses nothing when it gets no network scope.
        check(
            [
                vec![r("src/**"), full()],
                vec![r("src/**"), full()],
                vec![r("src/**"), full()],
                vec![r("src/**"), off()],
            ],
            Expect {
                read: &["src/**"],
                write: &[],
                network: Net::None,
                narrowed: false,
            },
        );
        check(
            [vec![off()], vec![off(), full()], vec![off()], vec![off()]],
            Expect {
                read: &[],
                write: &[],
                network: Net::Off,
                narrowed: false,
            },
        );
    }

    // KRN-07, difference 6: the result never is wider than another layer's pattern, even where the
    // original's score picked the wider one.
    #[test]
    fn result_is_never_wider_than_a_layer() {
        const WIDE: &str = "aaaaaaaaaaaaaaaaaaaa/**";
        const DEEP: &str = "aaaaaaaaaaaaaaaaaaaa/*/*/*/*";
        let (wide, deep) = (WIDE, DEEP);
        assert!(glob_contains(wide, deep));
        assert_eq!(
            narrowest(&[wide, wide, wide, deep]),
            wide,
            "the original's choice"
        );
        check(
            [vec![r(wide)], vec![r(wide)], vec![r(wide)], vec![r(deep)]],
            Expect {
                read: &[DEEP],
                write: &[],
                network: Net::None,
                narrowed: false,
            },
        );
        // `*/*` and `**/x` overlap only by a literal match; the original returned `**/x`, which
        // matches `x` and `a/b/x` outside `*/*`.
        assert!(glob_overlaps("*/*", "**/x"));
        assert_eq!(narrowest(&["*/*", "*/*", "*/*", "**/x"]), "**/x");
        let got = check(
            [
                vec![r("*/*")],
                vec![r("*/*")],
                vec![r("*/*")],
                vec![r("**/x")],
            ],
            EMPTY,
        );
        assert!(
            has_note(&got, "lies inside all the others"),
            "{:?}",
            got.notes
        );
    }

    // KRN-07, difference 7: `contains` tries every depth per `**`.
    #[test]
    fn contains_tries_each_globstar_depth() {
        assert!(!glob_contains("*/*/**", "**/**"));
        assert!(glob_matches("**/**", "dir"));
        assert!(!glob_matches("*/*/**", "dir"));
        assert!(glob_contains("**", "a/**/b/**"));
        assert!(
            !glob_contains("**", "**/**/**/**/**/**"),
            "more than five `**` answers false"
        );
    }

    // KRN-07, difference 5: fail closed, naming the layer and the pattern.
    #[test]
    fn invalid_scopes_are_errors() {
        let ok = vec![r("**")];
        let cases: Vec<(usize, ToolScope, ScopeLayer, &str)> = vec![
            (1, r("src/[a"), ScopeLayer::Lane, "src/[a"),
            (2, r("!secrets/**"), ScopeLayer::Task, "!secrets/**"),
            (3, w("/etc/**"), ScopeLayer::Tool, "/etc/**"),
            (0, r("../x/**"), ScopeLayer::Workspace, "../x/**"),
            (3, r(""), ScopeLayer::Tool, ""),
            (
                0,
                allow(&["https://x.example:443"]),
                ScopeLayer::Workspace,
                "https://x.example:443",
            ),
            (2, allow(&["10.0.0.0/33"]), ScopeLayer::Task, "10.0.0.0/33"),
            (1, allow(&["h:0"]), ScopeLayer::Lane, "h:0"),
        ];
        for (index, bad, layer, pattern) in cases {
            let mut l = [ok.clone(), ok.clone(), ok.clone(), ok.clone()];
            l[index].push(bad);
            let err = intersect(&layers(&l)).expect_err("invalid scope must fail");
            assert_eq!(err.layer(), layer, "{err}");
            assert_eq!(err.code(), "SCOPE_INVALID");
            let message = err.to_string();
            assert!(
                message.starts_with(layer.as_str()) && message.contains(&format!("`{pattern}`")),
                "{message}"
            );
            let refusal = check_path(&layers(&l), "a", PathAccess::Read);
            if matches!(err, ScopeError::InvalidPattern { .. })
                && matches!(
                    &l[index][1],
                    ToolScope::Path {
                        access: PathAccess::Read,
                        ..
                    }
                )
            {
                assert_eq!(refusal, Err(PathRefusal::InvalidScope(err)));
            }
        }
        let empty_allowlist = ToolScope::Network {
            posture: NetworkPosture::Allowlist,
            allowlist_entries: Some(vec![]),
        };
        let err = intersect(&layers(&[
            vec![empty_allowlist],
            ok.clone(),
            ok.clone(),
            ok.clone(),
        ]))
        .expect_err("empty allowlist");
        assert_eq!(
            err,
            ScopeError::EmptyAllowlist {
                layer: ScopeLayer::Workspace
            }
        );
        // Entries on `off`/`full` scopes are ignored by the algorithm but still validated.
        let off_with_bad_entry = ToolScope::Network {
            posture: NetworkPosture::Off,
            allowlist_entries: Some(vec!["not a host".into()]),
        };
        assert!(intersect(&layers(&[
            ok.clone(),
            ok.clone(),
            ok.clone(),
            vec![r("**"), off_with_bad_entry],
        ]))
        .is_err());
    }

    // KRN-07, difference 4: allowlists intersect as host:port / CIDR sets.
    #[test]
    fn allowlist_sets() {
        // Hosts compare case-insensitively.
        check(
            [
                vec![allow(&["Registry.NPMjs.org:443"])],
                vec![allow(&[NPM])],
                vec![allow(&[NPM])],
                vec![allow(&["REGISTRY.npmjs.org:443"])],
            ],
            Expect {
                read: &[],
                write: &[],
                network: Net::Allow(&[NPM]),
                narrowed: false,
            },
        );
        // A bare host allows that host on any port.
        let got = check(
            [
                vec![allow(&["registry.npmjs.org"])],
                vec![full()],
                vec![full()],
                vec![allow(&[NPM, PYPI])],
            ],
            Expect {
                read: &[],
                write: &[],
                network: Net::Allow(&[NPM]),
                narrowed: true,
            },
        );
        assert!(has_note(
            &got,
            "allowlist narrowed to `registry.npmjs.org:443`"
        ));
        // host:port inside CIDR blocks; nested blocks meet at the smaller one.
        check(
            [
                vec![allow(&["10.0.0.0/8"])],
                vec![allow(&["10.1.0.0/16"])],
                vec![full()],
                vec![allow(&["10.1.2.3:5432", "10.2.0.1:5432"])],
            ],
            Expect {
                read: &[],
                write: &[],
                network: Net::Allow(&["10.1.2.3:5432"]),
                narrowed: true,
            },
        );
        check(
            [
                vec![allow(&["10.0.0.0/8"])],
                vec![allow(&["10.1.0.0/16"])],
                vec![allow(&["10.0.0.0/8"])],
                vec![allow(&["10.0.0.0/8"])],
            ],
            Expect {
                read: &[],
                write: &[],
                network: Net::Allow(&["10.1.0.0/16"]),
                narrowed: true,
            },
        );
        // A host name is never inside a CIDR block (names are not resolved).
        check(
            [
                vec![allow(&["10.0.0.0/8"])],
                vec![full()],
                vec![full()],
                vec![allow(&["db.internal:5432"])],
            ],
            EMPTY,
        );
        // IPv6, written two ways.
        check(
            [
                vec![allow(&["fd00::/8"])],
                vec![allow(&["[fd00:0::1]:443"])],
                vec![full()],
                vec![allow(&["[fd00::1]:443"])],
            ],
            Expect {
                read: &[],
                write: &[],
                network: Net::Allow(&["[fd00::1]:443"]),
                narrowed: false,
            },
        );
        // Output sorted (byte order, as the original's JavaScript sort) and minimal.
        check(
            [
                vec![allow(&["b.example:443", "a.example", "10.0.0.1"])],
                vec![allow(&["a.example:443", "b.example", "10.0.0.0/24"])],
                vec![full()],
                vec![allow(&[
                    "b.example:443",
                    "10.0.0.1",
                    "a.example:443",
                    "a.example:443",
                ])],
            ],
            Expect {
                read: &[],
                write: &[],
                network: Net::Allow(&["10.0.0.1", "a.example:443", "b.example:443"]),
                narrowed: false,
            },
        );
        // The tool's own allowlist under `full` layers is granted as asked.
        check(
            [
                vec![full()],
                vec![full()],
                vec![full()],
                vec![allow(&[NPM])],
            ],
            Expect {
                read: &[],
                write: &[],
                network: Net::Allow(&[NPM]),
                narrowed: false,
            },
        );
        // No network scope asked: none given, nothing lost.
        check(
            [
                vec![r("**"), full()],
                vec![r("**"), full()],
                vec![r("**"), full()],
                vec![r("**")],
            ],
            Expect {
                read: &["**"],
                write: &[],
                network: Net::None,
                narrowed: false,
            },
        );
    }

    // ---------------------------------------------------------------------------------------------
    // KRN-10: reserved `.lumenflow/` writes, with the pack's own state carved out (REQUIREMENTS Q26).

    #[test]
    fn reserved_lumenflow_writes() {
        let tool = vec![
            w(".lumenflow/**"),
            w("./.lumenflow/state/other/x"),
            w(".lumenflow\\config.yaml"),
            w(".lumenflow"),
            w(".lumenflow/state/campus/evidence/exports/**"),
            w(".lumenflow/state/campus"),
            w(".lumenflow/state/campusx/**"),
            w(".lumenflow/state/*/**"),
            w(".lumenflow/state/campus/../other/**"),
            w(".lumenflowx/**"),
            w("src/**"),
            r(".lumenflow/**"),
        ];
        assert_eq!(
            reserved_write_scopes(&tool, "campus"),
            vec![
                ".lumenflow/**",
                ".lumenflow/state/other/x",
                ".lumenflow/config.yaml",
                ".lumenflow",
                ".lumenflow/state/campusx/**",
                ".lumenflow/state/*/**",
                ".lumenflow/state/campus/../other/**",
            ]
        );
        // Without a usable slug, nothing is carved out.
        assert_eq!(
            reserved_write_scopes(&[w(".lumenflow/state/*/x")], "*").len(),
            1
        );
        assert_eq!(
            reserved_write_scopes(&[w(".lumenflow/state/campus/x")], "").len(),
            1
        );

        // Concrete paths: `**` now reaches dot-directories, so writes are checked per path too.
        for (path, reserved) in [
            (".lumenflow/config.yaml", true),
            (".lumenflow", true),
            ("./.lumenflow//state/other/x.json", true),
            (".lumenflow/state/campus/x.json", false),
            (".lumenflow/state/campus", false),
            ("./.lumenflow//state/campus/evidence/a.json", false),
            (".lumenflow/state/campus/../other/x", true),
            (".lumenflowx/a", false),
            ("docs/.lumenflow/a", false),
            ("/abs/.lumenflow", true),
        ] {
            assert_eq!(is_reserved_write_path(path, "campus"), reserved, "{path}");
        }
        let layers_all = [
            vec![w("**")],
            vec![w("**")],
            vec![w("**")],
            vec![w("**/*.json")],
        ];
        assert_eq!(
            check_path(
                &layers(&layers_all),
                ".lumenflow/state/other/x.json",
                PathAccess::Write
            ),
            Ok(()),
            "scopes alone would allow it"
        );
        assert!(is_reserved_write_path(
            ".lumenflow/state/other/x.json",
            "campus"
        ));
    }

    // ---------------------------------------------------------------------------------------------
    // Associativity: what holds and what does not.

    /// `**` for both access modes: a neutral layer.
    fn universe() -> Vec<ToolScope> {
        vec![r("**"), w("**")]
    }

    /// `(workspace ∩ lane)` as one layer, then against task and tool.
    fn two_step(l: &[Vec<ToolScope>; 4]) -> EffectiveScopes {
        let u = universe();
        let wl = intersect(&ScopeLayers {
            workspace: &l[0],
            lane: &l[1],
            task: &u,
            tool: &u,
        })
        .unwrap_or_else(|e| panic!("{e}"))
        .as_tool_scopes();
        intersect(&ScopeLayers {
            workspace: &wl,
            lane: &u,
            task: &l[2],
            tool: &l[3],
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    // KRN-07: `overlap` is not transitive, so for arbitrary globs the grouping matters; both forms
    // stay inside every layer.
    #[test]
    fn not_associative_for_arbitrary_globs() {
        let l = [
            vec![r("a/b/**")],
            vec![r("a/**")],
            vec![r("*/b/**")],
            vec![r("**")],
        ];
        check(l.clone(), EMPTY);
        let grouped = two_step(&l);
        assert_eq!(grouped.read, vec!["a/b/**"]);
        assert_eq!(check_path(&layers(&l), "a/b/c", PathAccess::Read), Ok(()));
    }

    // ---------------------------------------------------------------------------------------------
    // Properties (KRN-07).

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(42),
            ..ProptestConfig::default()
        }
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-c]{1,2}",
            2 => Just("*".to_string()),
            2 => Just("**".to_string()),
            1 => Just(".d".to_string()),
        ]
    }

    fn brace_segment() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => segment(),
            1 => Just("{a,b}".to_string()),
            1 => Just("{b,cc}".to_string()),
        ]
    }

    fn pattern_from(seg: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
        prop::collection::vec(seg, 1..=5).prop_map(|s| s.join("/"))
    }

    fn pattern() -> impl Strategy<Value = String> {
        pattern_from(segment())
    }

    /// A pattern and a specialisation of it (wildcards made literal, segments appended), so that
    /// `contains` is often true.
    fn pattern_pair<S: Strategy<Value = String>>(
        seg: fn() -> S,
    ) -> impl Strategy<Value = (String, String)> {
        let independent = (pattern_from(seg()), pattern_from(seg()));
        let specialised = (
            prop::collection::vec(seg(), 1..=4),
            prop::collection::vec(any::<u8>(), 4),
            prop::collection::vec(seg(), 0..=2),
        )
            .prop_map(|(container, picks, tail)| {
                let mut nested: Vec<String> = container
                    .iter()
                    .zip(picks.iter().chain(std::iter::repeat(&0)))
                    .map(|(s, p)| match (s.as_str(), p % 3) {
                        ("*", 0) => "b".to_string(),
                        ("**", 0) => "a/*".to_string(),
                        ("**", 1) => "c".to_string(),
                        _ => s.clone(),
                    })
                    .collect();
                nested.extend(tail);
                (container.join("/"), nested.join("/"))
            });
        prop_oneof![independent, specialised]
    }

    /// Concrete paths a pattern may match: each `**` becomes 0 to 3 `dirN` segments, each `*` a
    /// `fileN`, each brace set one of its alternatives (at most 256 paths). Callers keep the ones
    /// the pattern matches.
    fn samples(pattern: &str) -> Vec<String> {
        let mut paths: Vec<Vec<String>> = vec![Vec::new()];
        let mut counter = 0;
        for seg in pattern.split('/') {
            let options: Vec<Vec<String>> = if seg == "**" {
                (0..=3)
                    .map(|d| {
                        (0..d)
                            .map(|i| {
                                counter += 1;
                                format!("dir{i}{counter}")
                            })
                            .collect()
                    })
                    .collect()
            } else if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                inner.split(',').map(|alt| vec![alt.to_string()]).collect()
            } else {
                let mut s = String::new();
                for part in seg.split('*').enumerate() {
                    if part.0 > 0 {
                        counter += 1;
                        s.push_str(&format!("file{counter}"));
                    }
                    s.push_str(part.1);
                }
                vec![vec![s]]
            };
            let mut next = Vec::new();
            'outer: for base in &paths {
                for option in &options {
                    let mut p = base.clone();
                    p.extend(option.iter().cloned());
                    next.push(p);
                    if next.len() >= 256 {
                        break 'outer;
                    }
                }
            }
            paths = next;
        }
        paths
            .into_iter()
            .map(|p| p.join("/"))
            .filter(|p| !p.is_empty())
            .collect()
    }

    /// Layer patterns: short, over a tiny alphabet, so that layers overlap often.
    fn layer_pattern() -> impl Strategy<Value = String> {
        let seg = prop_oneof![
            3 => Just("a"),
            1 => Just("b"),
            1 => Just(".d"),
            2 => Just("*"),
            4 => Just("**"),
        ];
        prop::collection::vec(seg, 1..=3).prop_map(|s| s.join("/"))
    }

    fn path_scope() -> impl Strategy<Value = ToolScope> {
        (layer_pattern(), prop::bool::weighted(0.7))
            .prop_map(|(p, read)| if read { r(&p) } else { w(&p) })
    }

    fn network_scope() -> impl Strategy<Value = ToolScope> {
        let entry = prop::sample::select(vec![
            "a.example:443",
            "A.example:80",
            "a.example",
            "b.example:443",
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.3:443",
            "10.1.2.3",
        ]);
        prop_oneof![
            2 => Just(full()),
            1 => Just(off()),
            3 => prop::collection::vec(entry, 1..=3).prop_map(|e| allow(&e)),
        ]
    }

    fn layer_scopes() -> impl Strategy<Value = Vec<ToolScope>> {
        (
            prop::collection::vec(path_scope(), 1..=3),
            prop::option::weighted(0.9, network_scope()),
        )
            .prop_map(|(mut paths, net)| {
                paths.extend(net);
                paths
            })
    }

    fn four_layers() -> impl Strategy<Value = [Vec<ToolScope>; 4]> {
        (
            layer_scopes(),
            layer_scopes(),
            layer_scopes(),
            layer_scopes(),
        )
            .prop_map(|(a, b, c, d)| [a, b, c, d])
    }

    fn all_patterns(l: &[Vec<ToolScope>]) -> Vec<String> {
        l.iter()
            .flatten()
            .filter_map(|s| match s {
                ToolScope::Path { pattern, .. } => Some(pattern.clone()),
                ToolScope::Network { .. } => None,
            })
            .collect()
    }

    fn set(v: &[String]) -> BTreeSet<String> {
        v.iter().cloned().collect()
    }

    /// A laminar family: `**`, subtrees `p/**` and files `p/f` over prefixes of `a`/`b`; any two
    /// members are nested or disjoint.
    fn laminar_scope() -> impl Strategy<Value = ToolScope> {
        (
            prop::collection::vec(prop_oneof![3 => Just("a"), 1 => Just("b")], 0..=2),
            prop::bool::weighted(0.7),
            prop::bool::weighted(0.8),
        )
            .prop_map(|(prefix, subtree, read)| {
                let mut parts: Vec<&str> = prefix;
                parts.push(if subtree { "**" } else { "f" });
                let p = parts.join("/");
                if read {
                    r(&p)
                } else {
                    w(&p)
                }
            })
    }

    fn laminar_layers() -> impl Strategy<Value = [Vec<ToolScope>; 4]> {
        let layer = || prop::collection::vec(laminar_scope(), 1..=3);
        (layer(), layer(), layer(), layer()).prop_map(|(a, b, c, d)| [a, b, c, d])
    }

    /// `allows_path` for each (already normalised) path and access, each pattern compiled once.
    fn decisions(got: &EffectiveScopes, paths: &[String]) -> Vec<(bool, bool)> {
        let compile = |patterns: &[String]| -> Vec<PathGlob> {
            patterns
                .iter()
                .filter_map(|p| PathGlob::new(p).ok())
                .collect()
        };
        let (read, write) = (compile(&got.read), compile(&got.write));
        paths
            .iter()
            .map(|p| {
                (
                    read.iter().any(|g| g.is_match(p)),
                    write.iter().any(|g| g.is_match(p)),
                )
            })
            .collect()
    }

    proptest! {
        #![proptest_config(config(4000))]

        // KRN-07, the original's soundness property: when `contains` says yes, every sample of
        // `nested` that matches it matches `container` (brace sets on either side included, so no
        // false positive from braces either).
        #[test]
        fn contains_is_sound((container, nested) in pattern_pair(brace_segment)) {
            if glob_contains(&container, &nested) {
                for path in samples(&nested) {
                    if glob_matches(&nested, &path) {
                        prop_assert!(
                            glob_matches(&container, &path),
                            "contains({container}, {nested}) but `{path}` escapes"
                        );
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(config(1000))]

        // KRN-07: reflexivity for simple patterns.
        #[test]
        fn contains_is_reflexive(p in pattern()) {
            prop_assert!(glob_contains(&p, &p), "{p}");
        }

        // KRN-07: negated patterns never contain and never overlap.
        #[test]
        fn negated_patterns_never_contain(a in pattern(), b in pattern()) {
            let na = format!("!{a}");
            let nb = format!("!{b}");
            prop_assert!(!glob_contains(&na, &b));
            prop_assert!(!glob_contains(&a, &nb));
            prop_assert!(!glob_contains(&na, &na));
            prop_assert!(!glob_overlaps(&na, &b));
            prop_assert!(!glob_overlaps(&na, &na));
        }
    }

    proptest! {
        #![proptest_config(config(500))]

        // KRN-07: commutative in the non-tool layers. Permuting workspace, lane and task gives the
        // same network grant, the same `narrowed`, the same path decisions and, unless two distinct
        // candidate patterns tie on score while containing each other (then either may be chosen),
        // the same pattern sets.
        #[test]
        fn commutative_in_policy_layers(l in four_layers()) {
            let base = intersect(&layers(&l)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let patterns = all_patterns(&l);
            let probes: Vec<String> = patterns.iter().flat_map(|p| samples(p)).take(400).collect();
            let tie = patterns.iter().any(|a| {
                patterns.iter().any(|b| {
                    a != b
                        && narrowness_score(a) == narrowness_score(b)
                        && glob_contains(a, b)
                        && glob_contains(b, a)
                })
            });
            for [i, j, k] in [[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
                let p = [l[i].clone(), l[j].clone(), l[k].clone(), l[3].clone()];
                let got = intersect(&layers(&p)).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&got.network, &base.network);
                prop_assert_eq!(got.narrowed, base.narrowed);
                prop_assert_eq!(decisions(&got, &probes), decisions(&base, &probes));
                if !tie {
                    prop_assert_eq!(set(&got.read), set(&base.read));
                    prop_assert_eq!(set(&got.write), set(&base.write));
                }
            }
        }

        // KRN-07: never wider than any layer. Every sample path of every effective pattern that the
        // pattern matches is matched by a pattern of every layer (`check_path`).
        #[test]
        fn never_wider_than_any_layer(l in four_layers()) {
            let got = intersect(&layers(&l)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            for access in PathAccess::VALUES {
                for pattern in got.patterns(*access) {
                    for path in samples(pattern) {
                        if !glob_matches(pattern, &path) {
                            continue;
                        }
                        prop_assert!(got.allows_path(&path, *access));
                        prop_assert_eq!(
                            check_path(&layers(&l), &path, *access),
                            Ok(()),
                            "`{}` from effective `{}` ({})", path, pattern, access
                        );
                    }
                }
            }
            // Network: every granted destination lies inside every layer's allowlist, and `full`
            // only where every layer says `full`.
            match &got.network {
                Some(NetworkGrant::Allowlist(entries)) => {
                    prop_assert!(!entries.is_empty());
                    for scopes in &l {
                        let listed: Vec<AllowEntry> = scopes
                            .iter()
                            .filter_map(|s| match s {
                                ToolScope::Network {
                                    posture: NetworkPosture::Allowlist,
                                    allowlist_entries: Some(e),
                                } => Some(e.clone()),
                                _ => None,
                            })
                            .flatten()
                            .filter_map(|e| AllowEntry::parse(&e).ok())
                            .collect();
                        if listed.is_empty() {
                            continue;
                        }
                        for granted in entries {
                            prop_assert!(listed.iter().any(|e| granted.is_within(e)), "{granted}");
                        }
                    }
                }
                Some(NetworkGrant::Full) => {
                    for scopes in &l {
                        prop_assert!(scopes.contains(&full()));
                    }
                }
                Some(NetworkGrant::Off) | None => {}
            }
        }

        // KRN-07: associative for laminar families. `(workspace ∩ lane) ∩ task` (the pair
        // intersected first, used as one layer) gives the same patterns and the same path decisions
        // as the three-layer form.
        #[test]
        fn associative_for_laminar_families(l in laminar_layers()) {
            let three = intersect(&layers(&l)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let grouped = two_step(&l);
            prop_assert_eq!(set(&grouped.read), set(&three.read));
            prop_assert_eq!(set(&grouped.write), set(&three.write));
            let probes: Vec<String> = all_patterns(&l).iter().flat_map(|p| samples(p)).collect();
            prop_assert_eq!(decisions(&grouped, &probes), decisions(&three, &probes));
        }

        // KRN-07: for arbitrary globs the grouped form is still never wider than any layer.
        #[test]
        fn grouped_form_is_sound(l in four_layers()) {
            let grouped = two_step(&l);
            for access in PathAccess::VALUES {
                for pattern in grouped.patterns(*access) {
                    for path in samples(pattern) {
                        if glob_matches(pattern, &path) {
                            prop_assert_eq!(check_path(&layers(&l), &path, *access), Ok(()));
                        }
                    }
                }
            }
        }
    }
}
