//! The `switchyard` command line: the platform's own commands (`up`, `serve`, `demo`)
//! and the client of a running platform (`run`, `follow`, `runs`, `approve`, `deny`,
//! `stop`, `apps`, `queue`, `providers`, `health`, `stress`).
//!
//! Each client command is a module with its clap arguments and an async function taking
//! the shared [`client::Client`]; the gateway URL and token come from
//! [`settings::resolve`], and every command ends with an [`exit::Exit`] code. A new
//! client command adds a `Command` variant, its module, and a line in [`run`].

pub mod apps;
pub mod client;
pub mod exit;
pub mod follow;
pub mod health;
pub mod output;
pub mod queue;
pub mod render;
pub mod runs;
pub mod settings;
pub mod stress;
pub mod style;

use clap::{Parser, Subcommand, ValueEnum};
use exit::Exit;
use settings::ClientArgs;
use switchyard_contracts::event::HumanLoopDecision;

/// Switchyard runs AI coding-agent sessions on a fleet of executors. This command starts
/// the platform and drives runs on a running one.
#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true,
    after_help = exit::EXIT_CODES_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start all four services in one process (config: switchyard.toml, SWITCHYARD_*)
    Up(UpArgs),
    /// Run one service in this process: gateway, control-plane, executor-manager or
    /// executor (config: switchyard.toml, SWITCHYARD_*)
    Serve(ServeArgs),
    /// Start a scripted demo run and print its events
    Demo(DemoArgs),
    /// Start a run; with --follow, render it live until it ends
    Run(runs::RunArgs),
    /// Render a run's events live until it ends (resumable with --cursor)
    Follow(runs::FollowArgs),
    /// List runs, or show one
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Approve a run's pending human-loop request
    Approve(runs::ReplyArgs),
    /// Deny a run's pending human-loop request
    Deny(runs::ReplyArgs),
    /// Stop a run
    Stop(runs::StopArgs),
    /// Register, list and show apps
    #[command(subcommand)]
    Apps(apps::AppsCommand),
    /// Show the run queue and why runs wait
    Queue(queue::QueueArgs),
    /// List the providers and where they are installed
    Providers(queue::ProvidersArgs),
    /// Check whether runs can work, and whether the environment or the runtime is at
    /// fault (exit 0 ready, 2 environment not ready, 3 runtime unhealthy)
    Health(health::HealthArgs),
    /// Start many runs, C at a time, and report how they ended class by class, with each
    /// failed sample's raw stream
    Stress(stress::StressArgs),
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// After start-up, run the demo (a scripted run) and print its events
    #[arg(long)]
    pub demo: bool,
    /// Run the demo, then shut down; the exit code says whether it succeeded
    #[arg(long)]
    pub exit_after_demo: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Service {
    Gateway,
    ControlPlane,
    ExecutorManager,
    Executor,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The service to run
    #[arg(value_enum)]
    pub service: Service,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The gateway's base URL [env: SWITCHYARD_URL] [config: url] [default:
    /// http://127.0.0.1:8080]
    #[arg(long, alias = "gateway", value_name = "URL")]
    pub url: Option<String>,
    /// API token [env: SWITCHYARD_TOKEN] [config: token]; default: the gateway's
    /// configured admin token
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The demo run's prompt
    #[arg(long, value_name = "TEXT", default_value = "Create hello.txt please")]
    pub prompt: String,
}

/// Runs the parsed command; errors are printed here, as `error: …` on stderr.
pub async fn run(cli: Cli) -> Exit {
    match dispatch(cli.command).await {
        Ok(exit) => exit,
        Err(error) => {
            let s = style::Styles::new(style::color_for(&std::io::stderr()));
            eprintln!("{}error:{:#} {error:#}", s.bad, s.bad);
            Exit::Error
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Up(args) => crate::serve::up(args.demo, args.exit_after_demo).await,
        Command::Serve(args) => crate::serve::serve(args.service).await,
        Command::Demo(args) => demo(args).await,
        Command::Run(args) => runs::run(&connect(&args.client)?, args).await,
        Command::Follow(args) => runs::follow_run(&connect(&args.client)?, args).await,
        Command::Runs(runs::RunsCommand::List(args)) => {
            runs::list(&connect(&args.client)?, &args).await
        }
        Command::Runs(runs::RunsCommand::Show(args)) => {
            runs::show(&connect(&args.client)?, &args).await
        }
        Command::Approve(args) => {
            runs::reply(&connect(&args.client)?, &args, HumanLoopDecision::Approve).await
        }
        Command::Deny(args) => {
            runs::reply(&connect(&args.client)?, &args, HumanLoopDecision::Deny).await
        }
        Command::Stop(args) => runs::stop(&connect(&args.client)?, &args).await,
        Command::Apps(apps::AppsCommand::Register(args)) => {
            apps::register(&connect(&args.client)?, &args).await
        }
        Command::Apps(apps::AppsCommand::List(args)) => {
            apps::list(&connect(&args.client)?, &args).await
        }
        Command::Apps(apps::AppsCommand::Show(args)) => {
            apps::show(&connect(&args.client)?, &args).await
        }
        Command::Queue(args) => queue::queue(&connect(&args.client)?, &args).await,
        Command::Providers(args) => queue::providers(&connect(&args.client)?, &args).await,
        Command::Health(args) => health::health(&connect(&args.client)?, &args).await,
        Command::Stress(args) => stress::stress(&connect(&args.client)?, args).await,
    }
}

/// The client for the gateway the flags, environment or config file name.
pub fn connect(args: &ClientArgs) -> anyhow::Result<client::Client> {
    let settings = settings::resolve(args, &switchyard_platform::config::process_env())?;
    for warning in &settings.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(client::Client::new(&settings)?)
}

async fn demo(args: DemoArgs) -> anyhow::Result<Exit> {
    let settings = settings::resolve(
        &ClientArgs {
            url: args.url,
            token: args.token,
        },
        &switchyard_platform::config::process_env(),
    )?;
    let token = match &settings.token {
        Some(token) => {
            use secrecy::ExposeSecret as _;
            token.expose_secret().to_owned()
        }
        None => crate::serve::admin_token(),
    };
    let status = crate::demo::run(&crate::demo::DemoOptions {
        gateway_url: settings.url,
        token,
        prompt: args.prompt,
    })
    .await?;
    if status != "succeeded" {
        anyhow::bail!("the demo run ended {status}");
    }
    Ok(Exit::Success)
}
