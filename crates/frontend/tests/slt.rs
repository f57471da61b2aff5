//! SQL behaviour as sqllogictest files: `tests/slt/*.slt`, each run in a fresh session.
//!
//! Cells print as the REPL's CSV output does (dates `YYYY-MM-DD`, decimals as plain
//! numbers), except NULL, which prints as `NULL`, and the empty string, as `(empty)`.

use std::path::PathBuf;

use arrow::array::Array;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use ember_frontend::{Session, StatementResult};
use ember_planner::EmberError;
use sqllogictest::{DBOutput, DefaultColumnType, DB};

struct EmberDb {
    session: Session,
}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        t if t.is_integer() => DefaultColumnType::Integer,
        t if t.is_floating() || matches!(t, DataType::Decimal128(..)) => {
            DefaultColumnType::FloatingPoint
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

impl DB for EmberDb {
    type Error = EmberError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, EmberError> {
        let mut last = DBOutput::StatementComplete(0);
        for result in self.session.execute_sql(sql)? {
            last = match result {
                StatementResult::Message(_) => DBOutput::StatementComplete(0),
                StatementResult::Rows(rows) => {
                    let types = rows
                        .schema
                        .fields()
                        .iter()
                        .map(|f| column_type(f.data_type()))
                        .collect();
                    let options = FormatOptions::new().with_null("NULL");
                    let mut out = Vec::new();
                    for batch in rows.partitions.iter().flatten() {
                        let formatters = batch
                            .columns()
                            .iter()
                            .map(|c| ArrayFormatter::try_new(c.as_ref() as &dyn Array, &options))
                            .collect::<Result<Vec<_>, _>>()?;
                        for r in 0..batch.num_rows() {
                            out.push(
                                formatters
                                    .iter()
                                    .map(|f| {
                                        let s = f.value(r).to_string();
                                        if s.is_empty() {
                                            "(empty)".to_string()
                                        } else {
                                            s
                                        }
                                    })
                                    .collect(),
                            );
                        }
                    }
                    DBOutput::Rows { types, rows: out }
                }
            };
        }
        Ok(last)
    }

    fn engine_name(&self) -> &str {
        "ember"
    }
}

#[test]
fn sqllogictests() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    // Only run files whose name contains the filter, if given: EMBER_SLT=joins cargo test.
    let filter = std::env::var("EMBER_SLT").unwrap_or_default();
    let mut failures = Vec::new();
    for file in files
        .iter()
        .filter(|f| f.to_string_lossy().contains(filter.as_str()))
    {
        let mut runner = sqllogictest::Runner::new(|| async {
            Ok(EmberDb {
                session: Session::new(),
            })
        });
        if let Err(e) = runner.run_file(file) {
            failures.push(format!("{}: {}", file.display(), e.display(false)));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
