//! `depot init`, `demo`, `token`, `key`, `export`, `verify`.

use super::output::{human_size, print_json, print_table, BuildBar};
use super::{ExportArgs, GlobalArgs};
use crate::domain::OrgCode;
use crate::service::views::TokenView;
use crate::service::{Actor, Depot};
use crate::store::Role;
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo server listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The demo directory (default: a new temporary directory, kept afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Size of each sample payload in MiB.
    #[arg(long, default_value_t = 8)]
    pub payload_mib: u64,
    /// Prepare everything and print the summary, but do not serve.
    #[arg(long)]
    pub no_serve: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Creates a token and prints it once, on a line of its own.
    Create {
        /// What the token may do: admin (everything) or partner (one org).
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The org of a partner token.
        #[arg(long)]
        org: Option<OrgCode>,
        /// A name for the audit log (default: generated).
        #[arg(long)]
        name: Option<String>,
    },
    /// Lists tokens (never their secrets).
    List,
    /// Revokes a token at once.
    Revoke {
        /// The token's id, as `token list` shows it.
        id: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Partner,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Prints the minisign public key file.
    Show,
}

pub fn init(global: &GlobalArgs) -> anyhow::Result<()> {
    let settings = global.settings()?;
    let report = crate::setup::init(&settings, true)?;
    for path in &report.created {
        outln!("created  {}", path.display());
    }
    for path in &report.kept {
        outln!("kept     {}", path.display());
    }
    Ok(())
}

pub fn demo(_global: &GlobalArgs, args: DemoArgs) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            anyhow::ensure!(
                std::fs::read_dir(&dir)?.next().is_none(),
                "demo directory {} is not empty; give a new one or leave --dir out",
                dir.display()
            );
            dir
        }
        None => tempfile::Builder::new()
            .prefix("depot-demo-")
            .tempdir()?
            .keep(),
    };
    let base_url = format!("http://{}", args.listen);
    let report = crate::demo::prepare(&dir, &base_url, args.payload_mib, &BuildBar::new())?;
    outln!("{}", crate::demo::summary(&report, &base_url));
    if args.no_serve {
        return Ok(());
    }
    super::serve::run(&report.settings, &args.listen, None)
}

pub fn token(global: &GlobalArgs, cmd: TokenCommand) -> anyhow::Result<()> {
    let depot = Depot::open(&global.settings()?)?;
    match cmd {
        TokenCommand::Create { role, org, name } => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Partner => Role::Partner,
            };
            let token = depot.create_token(&Actor::cli(), role, org, name)?;
            eprintln!(
                "token {} ({}) created; it is shown only now:",
                token.record.id, token.record.name
            );
            outln!("{}", token.secret);
        }
        TokenCommand::List => {
            let views: Vec<TokenView> = depot
                .meta()
                .list_tokens()?
                .iter()
                .map(TokenView::from)
                .collect();
            if global.json {
                return print_json(&views);
            }
            let rows = views
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.name.clone(),
                        t.role.clone(),
                        t.org.clone().unwrap_or_else(|| "-".into()),
                        t.created_at.clone(),
                        t.revoked_at
                            .clone()
                            .map_or_else(|| "live".into(), |at| format!("revoked {at}")),
                    ]
                })
                .collect::<Vec<_>>();
            print_table(&["ID", "NAME", "ROLE", "ORG", "CREATED", "STATE"], &rows);
        }
        TokenCommand::Revoke { id } => {
            depot.revoke_token(&Actor::cli(), &id)?;
            eprintln!("token {id} revoked");
        }
    }
    Ok(())
}

pub fn key(global: &GlobalArgs, cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Show => {
            let settings = global.settings()?;
            let key = crate::signing::SigningKey::load(&settings.signing_key)?;
            out!("{}", key.public_key().to_file_text());
        }
    }
    Ok(())
}

pub fn export(global: &GlobalArgs, args: ExportArgs) -> anyhow::Result<()> {
    let depot = Depot::open(&global.settings()?)?;
    let files = depot.export(&args.org, &args.release, &args.out)?;
    if global.json {
        return print_json(&files);
    }
    for f in &files {
        outln!("{:>10}  {}", human_size(f.size), f.path.display());
    }
    Ok(())
}

pub fn verify(global: &GlobalArgs) -> anyhow::Result<()> {
    let settings = global.settings()?;
    let depot = Depot::open(&settings)?;
    // On stderr: `--json` output stays one document.
    eprintln!("{}", settings.describe());
    let report = depot.verify()?;
    if global.json {
        print_json(&report)?;
    } else {
        for problem in &report.problems {
            outln!("MISMATCH  {problem}");
        }
        outln!(
            "checked {} blobs, {} packages, {} checksum files: {}",
            report.blobs_checked,
            report.packages_checked,
            report.checksum_files_checked,
            if report.is_clean() {
                "all good".to_string()
            } else {
                format!("{} problems", report.problems.len())
            }
        );
    }
    anyhow::ensure!(
        report.is_clean(),
        "verify found {} problems",
        report.problems.len()
    );
    Ok(())
}
