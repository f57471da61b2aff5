//! `ember`: the SQL prompt and script runner.
//!
//! ```text
//! ember --tpch 0.1                      # prompt over generated TPC-H tables
//! ember -c "SELECT 1" --format csv      # run statements and exit
//! ember -f script.sql --conf ember.sql.shuffle.partitions=8
//! ```

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ember_frontend::format::OutputFormat;
use ember_frontend::repl::{run_interactive, run_script, Printer};
use ember_frontend::Session;
use ember_planner::{EmberError, Result};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ember: a Spark-style SQL engine that keeps its answers right when parts of it fail.
#[derive(Debug, Parser)]
#[command(name = "ember", version)]
struct Cli {
    /// Register the TPC-H tables generated in memory at this scale factor (e.g. 0.1).
    #[arg(long, value_name = "SF")]
    tpch: Option<f64>,
    /// Run these SQL statements and exit (repeatable; runs before -f files).
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    commands: Vec<String>,
    /// Run the SQL statements in this file and exit (repeatable).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// How to print results: table, csv or json.
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    format: String,
    /// Set a configuration key before anything runs (repeatable): --conf key=value.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    conf: Vec<String>,
}

fn main() -> ExitCode {
    ember_frontend::allocator::keep_freed_memory();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let format: OutputFormat = cli.format.parse()?;
    let mut builder = Session::builder();
    for kv in &cli.conf {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| EmberError::Config(format!("--conf '{kv}': expected key=value")))?;
        builder = builder.config(k, v);
    }
    let session = builder.build()?;
    if let Some(sf) = cli.tpch {
        session.register_tpch(sf)?;
        if cli.commands.is_empty() && cli.files.is_empty() && std::io::stdin().is_terminal() {
            println!(
                "Registered TPC-H tables at scale factor {sf}: {}",
                session.table_names().join(", ")
            );
        }
    }
    let printer = Printer::new(format);
    let stdout = std::io::stdout();
    if !cli.commands.is_empty() || !cli.files.is_empty() {
        for sql in &cli.commands {
            run_script(&session, sql, &printer, &mut stdout.lock())?;
        }
        for path in &cli.files {
            let sql = std::fs::read_to_string(path)
                .map_err(|e| EmberError::io(path.display().to_string(), e))?;
            run_script(&session, &sql, &printer, &mut stdout.lock())
                .map_err(|e| e.context(format!("in {}", path.display())))?;
        }
        return Ok(());
    }
    if std::io::stdin().is_terminal() {
        run_interactive(&session, &printer)
    } else {
        // Piped input is a script: `echo "SELECT 1;" | ember`.
        let mut sql = String::new();
        std::io::stdin()
            .read_to_string(&mut sql)
            .map_err(|e| EmberError::io("<stdin>", e))?;
        run_script(&session, &sql, &printer, &mut stdout.lock())
    }
}
