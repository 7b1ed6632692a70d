//! Command-line interface: parses arguments into one configuration and runs the chosen command.

pub mod config;
pub mod status_table;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::backends::CandleBackend;
use crate::cli::config::{DEFAULT_CONFIG, HostConfig};
use crate::engine::device::SystemDevices;
use crate::manager::ModelManager;
use crate::runtime::{ModuleOptions, Runtime, Stdio};
use crate::serve::{HostStatus, Server};
use crate::store::hub::{Downloader, FileProgress};

/// Runs AI models for sandboxed WebAssembly modules.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Host configuration file (TOML); see `modelhost config` for every key and its default.
    #[arg(long, global = true, value_name = "FILE", env = "MODELHOST_CONFIG")]
    config: Option<PathBuf>,

    /// Folder of model files in the Hugging Face cache layout; overrides `models.cache_dir`.
    #[arg(long, global = true, value_name = "DIR")]
    models_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a module: initialize(settings), then its `wasi:cli/run` export with this process's
    /// stdin, stdout and stderr, then cleanup. Exits with the module's status.
    Run(RunArgs),
    /// Serves the modules listed in the configuration's [[modules]]: initializes them in order,
    /// routes HTTP requests to those with a `route` (plus /healthz and /readyz), and answers the
    /// admin API (/healthz, /readyz, /status, /metrics) on `serve.admin_address`. SIGINT or
    /// SIGTERM drains in-flight requests, cleans every module up and exits.
    Serve {
        /// Address to listen on; overrides `serve.address`.
        #[arg(long, value_name = "HOST:PORT")]
        address: Option<String>,
        /// Address of the admin API; overrides `serve.admin_address` ("" disables it).
        #[arg(long, value_name = "HOST:PORT")]
        admin_address: Option<String>,
    },
    /// Prints the status of a running `modelhost serve` (from its admin API's /status) as
    /// tables. Sends the token of `serve.admin_token_env` when the configuration names one.
    Status {
        /// The admin API's address; default: `serve.admin_address` of the configuration.
        #[arg(long, value_name = "HOST:PORT")]
        address: Option<String>,
        /// Prints the raw JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Prints the default configuration, with every key documented.
    Config,
    /// Downloads a model into the model store ahead of time (Hugging Face cache layout), from
    /// $HF_ENDPOINT with $HF_TOKEN (or the token `huggingface-cli login` saved).
    Pull {
        /// Repository id, optionally with a branch, tag or commit: `org/name[@revision]`.
        #[arg(value_name = "NAME[@REVISION]")]
        model: String,
        /// The weights file to take when the repository holds several (e.g. one `.gguf`).
        #[arg(long, value_name = "FILE")]
        weights_file: Option<String>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Settings passed to the module's `initialize`: JSON text, or @FILE to read them from a file.
    #[arg(long, value_name = "JSON|@FILE")]
    settings: Option<String>,

    /// Makes a host folder visible to the module, read-write, at GUEST (default: same path).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,

    /// Sets an environment variable for the module.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,

    /// The module: a WebAssembly component (`.wasm`).
    module: PathBuf,

    /// Arguments passed to the module.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "modelhost=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = match &cli.config {
        Some(path) => HostConfig::load(path)?,
        None => HostConfig::default(),
    };
    if let Some(dir) = cli.models_dir {
        config.models.cache_dir = Some(dir);
    }
    match cli.command {
        Command::Config => {
            print!("{DEFAULT_CONFIG}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Pull {
            model,
            weights_file,
        } => pull(&config, &model, weights_file.as_deref()),
        Command::Run(args) => tokio::runtime::Runtime::new()
            .context("cannot start the async runtime")?
            .block_on(run_module(config, args)),
        Command::Serve {
            address,
            admin_address,
        } => {
            if let Some(address) = address {
                config.serve.address = address;
            }
            if let Some(address) = admin_address {
                config.serve.admin_address = address;
            }
            tokio::runtime::Runtime::new()
                .context("cannot start the async runtime")?
                .block_on(serve(config))
        }
        Command::Status { address, json } => {
            let address = address.unwrap_or_else(|| config.serve.admin_address.clone());
            if address.is_empty() {
                bail!("the admin API is disabled (`serve.admin_address` is empty); pass --address");
            }
            let token = match &config.serve.admin_token_env {
                None => None,
                Some(name) => Some(std::env::var(name).with_context(|| {
                    format!("`serve.admin_token_env` names {name}, which is not set")
                })?),
            };
            status(&address, token.as_deref(), json)
        }
    }
}

/// The manager and runtime a configuration describes.
fn start_runtime(config: &HostConfig) -> anyhow::Result<Runtime> {
    let store = config.model_store();
    tracing::debug!(models = %store.root().display(), "model store");
    let manager = ModelManager::new(
        store,
        Arc::new(CandleBackend),
        &SystemDevices,
        config.manager_settings(),
    )?;
    Ok(Runtime::new(manager, &config.runtime)?)
}

async fn serve(config: HostConfig) -> anyhow::Result<ExitCode> {
    let runtime = Arc::new(start_runtime(&config)?);
    let server = Server::bind(&config.serve, config.served_modules()?, runtime).await?;
    println!("listening on http://{}", server.local_addr());
    match server.admin_addr() {
        Some(admin) => println!("admin API on http://{admin}"),
        None => println!("admin API disabled"),
    }
    server.run(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown requested");
}

/// `modelhost status`: GET /status from the admin API and print it.
fn status(address: &str, token: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let base = if address.contains("://") {
        address.trim_end_matches('/').to_string()
    } else {
        format!("http://{address}")
    };
    let mut request = ureq::get(&format!("{base}/status"));
    if let Some(token) = token {
        request = request.set("authorization", &format!("Bearer {token}"));
    }
    let response = match request.call() {
        Ok(response) => response,
        Err(ureq::Error::Status(code, _)) => bail!(
            "the admin API at {base} answered {code}{}",
            match code {
                401 => " (unauthorized): set the variable `serve.admin_token_env` names",
                _ => "",
            }
        ),
        Err(error) => {
            return Err(error).with_context(|| {
                format!(
                    "cannot reach a modelhost admin API at {base}; is `modelhost serve` running \
                     there (see `serve.admin_address`)?"
                )
            });
        }
    };
    let body = response.into_string().context("cannot read the status")?;
    if json {
        println!("{body}");
    } else {
        let status: HostStatus =
            serde_json::from_str(&body).context("the /status answer is not a modelhost status")?;
        print!("{}", status_table::render(&status));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_module(config: HostConfig, args: RunArgs) -> anyhow::Result<ExitCode> {
    let settings = read_settings(args.settings.as_deref())?;
    let options = ModuleOptions {
        name: None,
        args: args.args,
        env: args
            .env
            .iter()
            .map(|kv| parse_env(kv))
            .collect::<anyhow::Result<_>>()?,
        dirs: args.dirs.iter().map(|d| parse_dir(d)).collect(),
        stdio: Stdio::Inherit,
        limits: config.module_limits(None)?,
    };
    let runtime = start_runtime(&config)?;
    let image = runtime.load(&args.module)?;
    let mut module = runtime.instantiate(&image, options).await?;
    module.initialize(&settings).await?;
    let status = module.run().await?;
    module.cleanup().await?;
    Ok(ExitCode::from(u8::try_from(status).unwrap_or(1)))
}

/// `modelhost pull`: one progress bar per file, then a summary.
fn pull(config: &HostConfig, model: &str, weights_file: Option<&str>) -> anyhow::Result<ExitCode> {
    let (name, revision) = model.split_once('@').unwrap_or((model, "main"));
    let store = config.model_store();
    let downloader = Downloader::new(config.hub_settings());
    let bars = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template(
        "{msg:32!} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
    )
    .expect("a valid template");
    let mut current: Option<indicatif::ProgressBar> = None;
    let (mut downloaded, mut present, mut bytes) = (0, 0, 0u64);
    let started = std::time::Instant::now();
    let files = downloader.pull(
        &store,
        name,
        revision,
        weights_file,
        &mut |event| match event {
            FileProgress::Started { file, size } => {
                let bar = bars.add(
                    indicatif::ProgressBar::new(size)
                        .with_style(style.clone())
                        .with_message(file),
                );
                bytes += size;
                current = Some(bar);
            }
            FileProgress::Advanced { bytes: n, .. } => {
                if let Some(bar) = &current {
                    bar.inc(n);
                }
            }
            FileProgress::Done {
                downloaded: true, ..
            } => {
                if let Some(bar) = current.take() {
                    bar.finish();
                }
                downloaded += 1;
            }
            FileProgress::Done {
                downloaded: false, ..
            } => present += 1,
        },
    )?;
    println!(
        "{name}@{}: {downloaded} files downloaded ({:.1} MB in {:.1} s), {present} already present, in {}",
        files.revision,
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        files.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The settings text: inline JSON, or the contents of the file after `@`.
fn read_settings(arg: Option<&str>) -> anyhow::Result<String> {
    match arg {
        None => Ok(String::new()),
        Some(path) if path.starts_with('@') => std::fs::read_to_string(&path[1..])
            .with_context(|| format!("cannot read settings file {}", &path[1..])),
        Some(json) => Ok(json.to_string()),
    }
}

fn parse_env(kv: &str) -> anyhow::Result<(String, String)> {
    match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("--env expects NAME=VALUE, got '{kv}'"),
    }
}

fn parse_dir(spec: &str) -> (PathBuf, String) {
    match spec.split_once("::") {
        Some((host, guest)) => (PathBuf::from(host), guest.to_string()),
        None => (PathBuf::from(spec), spec.to_string()),
    }
}
