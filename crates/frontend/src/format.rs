//! Rendering query results for people and for scripts: an aligned table, CSV or JSON lines.
//!
//! All three share Arrow's value formatter, so a date prints as `YYYY-MM-DD` and a decimal as
//! a plain number (`12.30`) whichever format is chosen; only NULL differs (`NULL` in a table,
//! an empty cell in CSV, `null` in JSON).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use arrow::util::pretty::{pretty_format_batches_with_options, pretty_format_batches_with_schema};
use ember_planner::{EmberError, Result};

/// How the `ember` binary prints results (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Csv,
    Json,
}

impl FromStr for OutputFormat {
    type Err = EmberError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            other => Err(EmberError::Config(format!(
                "unknown output format '{other}': expected table, csv or json"
            ))),
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputFormat::Table => "table",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
        })
    }
}

/// Renders `batches` (all with `schema`) in `format`. The result ends with a newline unless
/// it is empty.
pub fn format_batches(
    format: OutputFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<String> {
    match format {
        OutputFormat::Table => format_table(schema, batches),
        OutputFormat::Csv => format_csv(schema, batches),
        OutputFormat::Json => format_json(batches),
    }
}

/// An aligned table with a header, NULL shown as `NULL`.
pub fn format_table(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<String> {
    // Arrow's pretty printer takes display options only without a schema, and a schema only
    // with default options: use the options when there are batches to print, the schema
    // to still print a header when there are none.
    let options = FormatOptions::new()
        .with_null("NULL")
        .with_display_error(true);
    let table = if batches.is_empty() {
        pretty_format_batches_with_schema(schema.clone(), batches)?.to_string()
    } else {
        pretty_format_batches_with_options(batches, &options)?.to_string()
    };
    let mut out = table;
    if !out.is_empty() {
        out.push('\n');
    }
    Ok(out)
}

/// Options shared by CSV output and [`cell_strings`]: NULL as the empty string, errors
/// reported rather than printed into cells.
fn plain_options() -> FormatOptions<'static> {
    FormatOptions::new().with_null("").with_display_error(false)
}

/// CSV with a header row; fields with a comma, quote or line break are quoted.
pub fn format_csv(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<String> {
    let mut out = String::new();
    let header: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| csv_field(f.name()))
        .collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for row in cell_strings(batches)? {
        let row: Vec<String> = row.iter().map(|c| csv_field(c)).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    Ok(out)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One JSON object per row, NULLs written as `null`.
pub fn format_json(batches: &[RecordBatch]) -> Result<String> {
    let mut buf = Vec::new();
    {
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::LineDelimited>(&mut buf);
        for batch in batches {
            writer.write(&with_unique_names(batch)?)?;
        }
        writer.finish()?;
    }
    String::from_utf8(buf)
        .map_err(|e| EmberError::Internal(format!("JSON writer produced invalid UTF-8: {e}")))
}

/// `batch` with repeated column names made unique (`x`, `x_2`, ...): a JSON object keeps one
/// value per key, so `SELECT a.x, b.x` would otherwise lose a column in every reader.
fn with_unique_names(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut seen: Vec<String> = Vec::with_capacity(schema.fields().len());
    let mut renamed = false;
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let mut name = f.name().clone();
            let mut n = 1;
            while seen.contains(&name) {
                n += 1;
                name = format!("{}_{n}", f.name());
            }
            renamed |= name != *f.name();
            seen.push(name.clone());
            f.as_ref().clone().with_name(name)
        })
        .collect();
    if !renamed {
        return Ok(batch.clone());
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        batch.columns().to_vec(),
    )?)
}

/// Every cell of every row as text (NULL = empty string), in row order. Used by CSV output
/// and by tests comparing results with expected answers.
pub fn cell_strings(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>> {
    let options = plain_options();
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref() as &dyn Array, &options))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for r in 0..batch.num_rows() {
            let row = formatters
                .iter()
                .map(|f| f.value(r).try_to_string())
                .collect::<std::result::Result<Vec<_>, _>>()?;
            rows.push(row);
        }
    }
    Ok(rows)
}

/// "1 row" / "N rows".
pub fn rows_label(n: usize) -> String {
    if n == 1 {
        "1 row".to_string()
    } else {
        format!("{n} rows")
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Date32Array, Decimal128Array, Int64Array, StringArray};
    use arrow::datatypes::DataType;

    use super::*;

    fn batch() -> RecordBatch {
        let price = Decimal128Array::from(vec![Some(1230), None])
            .with_precision_and_scale(15, 2)
            .unwrap();
        RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("name", Arc::new(StringArray::from(vec![Some("a,b"), None]))),
            ("price", Arc::new(price)),
            (
                "day",
                Arc::new(Date32Array::from(vec![Some(0), Some(19000)])),
            ),
        ])
        .unwrap()
    }

    #[test]
    fn csv_has_header_plain_decimals_iso_dates_and_empty_nulls() {
        let b = batch();
        let out = format_csv(&b.schema(), &[b]).unwrap();
        assert_eq!(
            out,
            "id,name,price,day\n1,\"a,b\",12.30,1970-01-01\n2,,,2022-01-08\n"
        );
    }

    #[test]
    fn json_is_one_object_per_row_with_explicit_nulls() {
        let out = format_json(&[batch()]).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[1],
            r#"{"id":2,"name":null,"price":null,"day":"2022-01-08"}"#
        );
    }

    #[test]
    fn json_keys_stay_unique_when_column_names_repeat() {
        let b = batch();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("id", DataType::Int64, true),
            Field::new("id_2", DataType::Int64, true),
        ]));
        let col = b.column(0).clone();
        let repeated = RecordBatch::try_new(schema, vec![col.clone(), col.clone(), col]).unwrap();
        let out = format_json(&[repeated]).unwrap();
        assert_eq!(
            out.lines().next().unwrap(),
            r#"{"id":1,"id_2":1,"id_2_2":1}"#
        );
    }

    #[test]
    fn table_shows_header_even_without_rows() {
        let b = batch();
        let out = format_table(&b.schema(), &[]).unwrap();
        assert!(out.contains("| id | name | price | day |"), "{out}");
    }

    #[test]
    fn output_format_parses_names() {
        assert_eq!("CSV".parse::<OutputFormat>().unwrap(), OutputFormat::Csv);
        assert!("xml".parse::<OutputFormat>().is_err());
    }
}
