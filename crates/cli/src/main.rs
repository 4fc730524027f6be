//! `lumenflow`: the command line of the LumenFlow governed runtime.
//!
//! This binary is glue: it parses arguments, resolves the workspace, calls the library crates and
//! renders what they return. Command logic that is not about the terminal lives in the kernel.

mod commands;
mod fetch;
mod output;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "lumenflow",
    version,
    about = "The LumenFlow governed runtime for AI-agent tool calls"
)]
struct Cli {
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// The workspace folder (default: the nearest folder upwards holding workspace.yaml); under
    /// `cloud`, the workspace id instead.
    #[arg(long, global = true, value_name = "DIR")]
    workspace: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create workspace.yaml and .lumenflow/ in a folder.
    Init(InitArgs),
    /// Author, validate, hash, install and list domain packs.
    #[command(subcommand)]
    Pack(PackCommand),
    /// Read or change one fully-qualified workspace configuration key.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Guided runs of the product end to end.
    #[command(subcommand)]
    Demo(DemoCommand),
    /// Watch the workspace's local event ledger.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Create, claim, block, complete and inspect tasks.
    #[command(subcommand)]
    Task(commands::task::TaskCommand),
    /// List, show, grant and deny approvals of tool calls.
    #[command(subcommand)]
    Approvals(commands::approvals::ApprovalsCommand),
    /// Run and administer the control plane (serve, enrollment codes, devices, approvals).
    #[command(subcommand)]
    Cloud(commands::cloud::CloudCommand),
    /// Call a tool through the governed dispatch path, or list the tools.
    #[command(subcommand)]
    Tool(commands::tool::ToolCommand),
    /// Check the kernel event log's hash chain and the evidence of its receipts (`verify`, the
    /// default).
    Audit(commands::tool::AuditArgs),
    /// Verify a trusted-compute evidence bundle (with --pubkey to pin the signer).
    #[command(subcommand)]
    Proof(commands::proof::ProofCommand),
    /// Campus telemetry: register facilities, ingest readings, poll Redfish, verify attestations.
    #[command(subcommand)]
    Campus(commands::campus::CampusCommand),
    /// Place a workload on a peer descriptor with the compute resolver (refuses, never downgrades).
    #[command(subcommand)]
    Compute(commands::compute::ComputeCommand),
    /// Install an enrollment token: standalone, or from a control plane with a one-time code.
    Enroll(commands::conductor::EnrollArgs),
    /// Mint scoped invocation tokens (standalone mode).
    #[command(subcommand)]
    Token(commands::conductor::TokenCommand),
    /// Register phone devices for `<workspace>:phone:<device>` subjects.
    #[command(subcommand)]
    Device(commands::conductor::DeviceCommand),
    /// Serve the workspace's governed HTTP surface (GET /tools, POST /tools/NAME, /events, /mcp).
    Sidecar(commands::conductor::SidecarArgs),
    /// Serve the workspace's governed tools over MCP on stdin/stdout.
    ///
    /// The caller is the bearer token in LUMENFLOW_TOKEN, else the workspace's enrollment token;
    /// its scopes decide which tools are listed and callable (mint one with `agent:execute-turn`
    /// to offer agent turns).
    Mcp(commands::conductor::McpArgs),
    /// Internal: the network relay helper bubblewrap runs inside a tool sandbox.
    #[command(name = "__sandbox-init", hide = true, disable_help_flag = true)]
    SandboxInit {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Args, Debug)]
struct InitArgs {
    /// Folder to initialise (default: the current folder).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Workspace id (default: derived from the folder name).
    #[arg(long)]
    id: Option<String>,
    /// Human-readable name (default: the folder name).
    #[arg(long)]
    name: Option<String>,
}

#[derive(Args, Debug, Clone)]
struct PackLocator {
    /// The pack folder.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["id", "builtin"])]
    pack_root: Option<PathBuf>,
    /// A pack id, looked up under --packs-root; without --packs-root, where the loader looks:
    /// packs/<id>, packages/@lumenflow/packs/<id>, then the pack built into this binary.
    #[arg(long, conflicts_with = "builtin")]
    id: Option<String>,
    /// Folder holding packs by id (default: <workspace>/packs, else ./packs).
    #[arg(long, value_name = "DIR")]
    packs_root: Option<PathBuf>,
    /// A pack built into this binary.
    #[arg(long, value_name = "ID")]
    builtin: Option<String>,
}

#[derive(Subcommand, Debug)]
enum PackCommand {
    /// Run the five checks: manifest schema, import boundaries, tool entries, security lint, integrity.
    Validate(PackLocator),
    /// Print the pack's integrity hash (`sha256:<hex>`), as pinned in workspace.yaml.
    Hash(PackLocator),
    /// Copy, clone or unpack a pack into <workspace>/packs/<id>, verify it and pin it.
    Install(InstallArgs),
    /// Generate a pack from secure templates, interactively or from --spec-file.
    Author(AuthorArgs),
    /// List pinned packs (with install and integrity state) and the built-in packs.
    List,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SourceKind {
    Local,
    Git,
    Registry,
}

#[derive(Args, Debug)]
struct InstallArgs {
    /// The pack id (its manifest's `id`).
    #[arg(long)]
    id: String,
    /// The version to pin (its manifest's `version`); `latest` with --registry-url.
    #[arg(long)]
    version: String,
    /// Where the pack comes from; `local` falls back to the pack built into this binary when
    /// the workspace has no folder of that id.
    #[arg(long, value_enum)]
    source: SourceKind,
    /// local: the pack folder (default: <packs-root>/<id>).
    #[arg(long, value_name = "DIR")]
    pack_root: Option<PathBuf>,
    /// local: folder holding packs by id (default: <workspace>/packs).
    #[arg(long, value_name = "DIR")]
    packs_root: Option<PathBuf>,
    /// git: repository URL (or path) whose root is the pack.
    #[arg(long)]
    url: Option<String>,
    /// git: tag, branch or commit (default: tag v<version> if it exists).
    #[arg(long)]
    rev: Option<String>,
    /// registry: the pack tarball (.tar.gz), as an https URL or a file path.
    #[arg(long, value_name = "URL|PATH")]
    tarball: Option<String>,
    /// registry: the tarball's expected SHA-256 (`sha256:<hex>` or bare hex).
    #[arg(long, value_name = "DIGEST")]
    sha256: Option<String>,
    /// registry: a LumenFlow registry base URL; resolves the tarball and its digest by id and version.
    #[arg(long, value_name = "URL")]
    registry_url: Option<String>,
    /// The expected pack content hash (`sha256:<hex>`); the install fails if it differs.
    #[arg(long)]
    integrity: Option<String>,
    /// Replace an installed pack whose content differs.
    #[arg(long)]
    force: bool,
    /// Pin with `integrity: dev` (skips verification at load; refused in production).
    #[arg(long)]
    dev: bool,
}

#[derive(Args, Debug)]
struct AuthorArgs {
    /// A YAML or JSON authoring request; without it the wizard asks on the terminal.
    #[arg(long, value_name = "FILE")]
    spec_file: Option<PathBuf>,
    /// Folder to create the pack in (default: packs).
    #[arg(long, value_name = "DIR", default_value = "packs")]
    output: PathBuf,
    /// Replace an existing pack folder of the same id.
    #[arg(long)]
    force: bool,
    /// Do not run `pack validate` on the result.
    #[arg(long)]
    skip_validate: bool,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the value at a fully-qualified key.
    Get {
        #[arg(long)]
        key: String,
    },
    /// Set the value at a fully-qualified key, validated by the key's owner.
    Set {
        #[arg(long)]
        key: String,
        #[arg(long, allow_hyphen_values = true)]
        value: String,
    },
}

#[derive(Subcommand, Debug)]
enum DemoCommand {
    /// Walk the pack quickstart in a scratch workspace: init, author, validate, hash, install, config.
    Quickstart {
        /// Where to create the scratch workspace (default: a new temporary folder, removed after).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// The trusted-compute chain for real: control plane, enrolled sidecar, Ask, rules, tool
    /// calls in a scratch git repository, an approval, and a signed, verified evidence bundle.
    TrustedCompute(commands::trusted_compute::TrustedComputeArgs),
}

#[derive(Subcommand, Debug)]
enum EventsCommand {
    /// Print the events of .lumenflow/state/conductor/events.jsonl, oldest first.
    Tail {
        /// Keep watching and print new events as they arrive (until interrupted).
        #[arg(long, short)]
        follow: bool,
        /// Only events of this kind (e.g. `acme-demo:job_completed`).
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// Only the last N events (default: all).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Replay the kernel's hash-chained event log (tasks, runs, tool-call receipts).
    Log {
        /// Only records of this task.
        #[arg(long)]
        task: Option<String>,
        /// Only records of this kind (repeatable), e.g. `tool_call_finished`.
        #[arg(long, value_name = "KIND")]
        kind: Vec<String>,
        /// Only records at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only records at or before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Cursor: only records after this sequence number (from `next_cursor`).
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// At most N records, oldest first (default: all); page on with `--after` and the printed
        /// `next_cursor`. (`events tail --limit N` is the newest N of the ledger, another log.)
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
}

// mimalloc instead of the system allocator: the control plane's ingest and the sidecar allocate
// and free many short-lived buffers across threads, where glibc's malloc spent a third of the
// ingest profile (bench/ingest.sh). Built without transparent huge pages (the workspace's
// `no_thp` feature): with them, purging and refaulting 2 MiB pages cost the sidecar 8-10% of its
// CPU and 4-6x its resident memory under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let ctx = commands::Context {
        json,
        workspace: cli.workspace,
    };
    let result = match cli.command {
        Command::Init(a) => commands::init::run(&ctx, a.dir, a.id, a.name),
        Command::SandboxInit { args } => return commands::sandbox_init::run(args),
        Command::Enroll(a) => commands::conductor::enroll(&ctx, a),
        Command::Token(c) => commands::conductor::token(&ctx, c),
        Command::Device(c) => commands::conductor::device(&ctx, c),
        Command::Sidecar(a) => commands::conductor::sidecar(&ctx, a),
        Command::Mcp(a) => commands::conductor::mcp(&ctx, a),
        Command::Task(c) => commands::task::run(&ctx, c),
        Command::Approvals(c) => commands::approvals::run(&ctx, c),
        Command::Cloud(c) => commands::cloud::run(&ctx, c),
        Command::Tool(c) => commands::tool::run_tool(&ctx, c),
        // Plain `lumenflow audit` verifies: there is nothing else to audit (walk-G F14).
        Command::Audit(a) => commands::tool::run_audit(
            &ctx,
            a.command.unwrap_or(commands::tool::AuditCommand::Verify),
        ),
        Command::Proof(c) => commands::proof::run(&ctx, c),
        Command::Campus(c) => commands::campus::run(&ctx, c),
        Command::Compute(c) => commands::compute::run(&ctx, c),
        Command::Pack(PackCommand::Validate(l)) => commands::pack::validate(&ctx, &l.into()),
        Command::Pack(PackCommand::Hash(l)) => commands::pack::hash(&ctx, &l.into()),
        Command::Pack(PackCommand::Install(a)) => commands::pack::install(&ctx, a.into()),
        Command::Pack(PackCommand::Author(a)) => {
            commands::author::run(&ctx, a.spec_file, a.output, a.force, a.skip_validate)
        }
        Command::Pack(PackCommand::List) => commands::pack::list(&ctx),
        Command::Config(ConfigCommand::Get { key }) => commands::config::get(&ctx, &key),
        Command::Config(ConfigCommand::Set { key, value }) => {
            commands::config::set(&ctx, &key, &value)
        }
        Command::Demo(DemoCommand::Quickstart { dir }) => commands::demo::quickstart(&ctx, dir),
        Command::Demo(DemoCommand::TrustedCompute(args)) => {
            commands::trusted_compute::run(&ctx, args)
        }
        Command::Events(EventsCommand::Tail {
            follow,
            kind,
            limit,
        }) => commands::events::tail(
            &ctx,
            commands::events::TailArgs {
                follow,
                kind,
                limit,
            },
        ),
        Command::Events(EventsCommand::Log {
            task,
            kind,
            since,
            until,
            after,
            limit,
        }) => commands::tool::run_log(&ctx, task, kind, since, until, after, limit),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::print_error(&e, json);
            // A torn last line after a crash is not tampering: monitors tell it apart by status.
            if e.code == commands::tool::LOG_TORN_TAIL {
                ExitCode::from(3)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

impl From<PackLocator> for commands::pack::Locator {
    fn from(l: PackLocator) -> Self {
        commands::pack::Locator {
            pack_root: l.pack_root,
            id: l.id,
            packs_root: l.packs_root,
            builtin: l.builtin,
        }
    }
}

impl From<InstallArgs> for commands::pack::InstallArgs {
    fn from(a: InstallArgs) -> Self {
        commands::pack::InstallArgs {
            id: a.id,
            version: a.version,
            source: match a.source {
                SourceKind::Local => "local",
                SourceKind::Git => "git",
                SourceKind::Registry => "registry",
            },
            pack_root: a.pack_root,
            packs_root: a.packs_root,
            url: a.url,
            rev: a.rev,
            tarball: a.tarball,
            sha256: a.sha256,
            registry_url: a.registry_url,
            integrity: a.integrity,
            force: a.force,
            dev: a.dev,
        }
    }
}
