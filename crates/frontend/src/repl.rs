//! The `ember` SQL prompt and script runner.
//!
//! Scripts (`-c`, `-f`, piped stdin) stop at the first error so a failing step fails the
//! command; the interactive prompt prints the error and keeps going, since the user is there
//! to fix the statement.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ember_planner::{EmberError, Result};
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

use crate::format::{format_batches, rows_label, OutputFormat};
use crate::session::{Session, StatementResult};

/// Prints statement results in one output format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: OutputFormat,
}

impl Printer {
    pub fn new(format: OutputFormat) -> Self {
        Printer { format }
    }

    /// Writes one statement's result. Tables get a "N rows in X.XXXs" line; in CSV and
    /// JSON only result rows are printed, so the output can be piped into other tools.
    pub fn print(
        &self,
        out: &mut dyn Write,
        result: &StatementResult,
        elapsed: Duration,
    ) -> Result<()> {
        let text = match result {
            StatementResult::Rows(rows) => {
                let batches: Vec<_> = rows.partitions.iter().flatten().cloned().collect();
                let mut text = format_batches(self.format, &rows.schema, &batches)?;
                if self.format == OutputFormat::Table {
                    text.push_str(&format!(
                        "{} in {:.3}s\n",
                        rows_label(rows.num_rows()),
                        elapsed.as_secs_f64()
                    ));
                }
                text
            }
            StatementResult::Message(m) if self.format == OutputFormat::Table => format!("{m}\n"),
            StatementResult::Message(_) => String::new(),
        };
        out.write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| EmberError::io("<stdout>", e))
    }
}

/// Runs every statement of `sql`, printing each result as soon as it is ready. Stops at the
/// first error and returns it.
pub fn run_script(
    session: &Session,
    sql: &str,
    printer: &Printer,
    out: &mut dyn Write,
) -> Result<()> {
    let mut started = Instant::now();
    session.execute_sql_each(sql, |result| {
        printer.print(out, &result, started.elapsed())?;
        started = Instant::now();
        Ok(())
    })
}

/// True when `buffer` holds a complete statement: it ends with `;` (ignoring trailing
/// whitespace and `--` comments).
pub fn is_complete(buffer: &str) -> bool {
    let last_code_line = buffer
        .lines()
        .map(|l| match l.find("--") {
            Some(i) => &l[..i],
            None => l,
        })
        .map(str::trim_end)
        .rfind(|l| !l.is_empty());
    last_code_line.is_some_and(|l| l.ends_with(';'))
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ember_history"))
}

const HELP: &str = "\
Enter SQL statements ending with ';' (they may span several lines).
  SHOW TABLES;  DESCRIBE t;  EXPLAIN SELECT ...;  SET ember.sql.shuffle.partitions = 8;  SHOW ALL;
  \\q, quit or exit leaves; Ctrl-C clears the current statement.";

/// The interactive prompt. Returns when the user quits (Ctrl-D, `\q`, `quit`, `exit`).
pub fn run_interactive(session: &Session, printer: &Printer) -> Result<()> {
    let mut editor = DefaultEditor::new()
        .map_err(|e| EmberError::Execution(format!("cannot start the line editor: {e}")))?;
    let history = history_path();
    if let Some(path) = &history {
        // A missing history file on first start is normal.
        let _ = editor.load_history(path);
    }
    println!("Ember SQL. Statements end with ';'. Type \\h for help, \\q to quit.");
    let mut buffer = String::new();
    let stdout = std::io::stdout();
    loop {
        let prompt = if buffer.is_empty() {
            "ember> "
        } else {
            "   ..> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if buffer.is_empty() {
                    match trimmed {
                        "" => continue,
                        "\\q" | "quit" | "exit" | "quit;" | "exit;" => break,
                        "\\h" | "help" | "\\?" => {
                            println!("{HELP}");
                            continue;
                        }
                        _ => {}
                    }
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if is_complete(&buffer) {
                    let _ = editor.add_history_entry(buffer.trim_end());
                    let mut out = stdout.lock();
                    if let Err(e) = run_script(session, &buffer, printer, &mut out) {
                        eprintln!("Error: {e}");
                    }
                    buffer.clear();
                }
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                return Err(EmberError::Execution(format!("reading input failed: {e}")));
            }
        }
    }
    if let Some(path) = &history {
        if let Err(e) = editor.save_history(path) {
            eprintln!("warning: could not save history to {}: {e}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_complete_at_a_semicolon() {
        assert!(!is_complete("select 1"));
        assert!(!is_complete("select 1\nfrom t\n"));
        assert!(is_complete("select 1\nfrom t;\n"));
        assert!(is_complete("select 1; -- done\n"));
        assert!(!is_complete("select 1 -- not yet;\n"));
    }

    #[test]
    fn csv_output_omits_messages_and_timing() {
        let mut out = Vec::new();
        let printer = Printer::new(OutputFormat::Csv);
        printer
            .print(
                &mut out,
                &StatementResult::Message("Table 't' created.".into()),
                Duration::ZERO,
            )
            .unwrap();
        assert!(out.is_empty());
    }
}
