//! SQL text → statements: sqlparser's AST for standard SQL, plus Ember's own statements.
//!
//! Like DataFusion's `DFParser`, this is a thin layer over [`sqlparser::parser::Parser`]: it
//! looks at the first words of each statement, parses Ember's statements (`COPY (query) TO
//! 'path' STORED AS PARQUET`, `CHECKPOINT TABLE t`, `VACUUM CHECKPOINTS`, `CREATE EXTERNAL
//! TABLE t STORED AS fmt LOCATION 'path'`) itself and hands everything else to sqlparser.
//! `CREATE EXTERNAL TABLE` is ours because sqlparser's Hive-style version does not know
//! `STORED AS CSV`/`JSON`.

use sqlparser::ast::{ObjectName, Query, Statement};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token};

use ember_planner::{EmberError, Result};

use super::statement::FileFormat;

/// One parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum EmberStatement {
    /// Anything sqlparser understands.
    Sql(Box<Statement>),
    /// `CREATE [OR REPLACE] EXTERNAL TABLE [IF NOT EXISTS] t STORED AS fmt LOCATION 'path'`.
    CreateExternalTable {
        /// `OR REPLACE` was written (the planner rejects it rather than ignore it).
        or_replace: bool,
        name: ObjectName,
        format: FileFormat,
        location: String,
        if_not_exists: bool,
    },
    /// `COPY (query) TO 'path' [STORED AS fmt]` or `COPY t TO 'path' ...`.
    Copy {
        source: CopySource,
        path: String,
        format: FileFormat,
    },
    /// `CHECKPOINT TABLE t`.
    CheckpointTable { name: ObjectName },
    /// `VACUUM CHECKPOINTS`.
    VacuumCheckpoints,
}

/// What a `COPY` statement writes.
#[derive(Debug, Clone, PartialEq)]
pub enum CopySource {
    Query(Box<Query>),
    Table(ObjectName),
}

/// Parses `sql` (one or more statements separated by `;`).
pub fn parse_sql(sql: &str) -> Result<Vec<EmberStatement>> {
    EmberParser::new(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| locate_eof(e, sql))
}

/// sqlparser gives no position for "found: EOF"; the end of the text is where it is.
fn locate_eof(e: EmberError, sql: &str) -> EmberError {
    match e {
        EmberError::Sql(m) if !m.starts_with("line ") => {
            let line = sql.lines().count().max(1);
            let column = sql.lines().last().map_or(0, |l| l.chars().count()) + 1;
            EmberError::Sql(format!("line {line}:{column}: {m}"))
        }
        other => other,
    }
}

struct EmberParser<'a> {
    parser: Parser<'a>,
}

static DIALECT: GenericDialect = GenericDialect {};

impl<'a> EmberParser<'a> {
    fn new(sql: &str) -> Result<Self> {
        let parser = Parser::new(&DIALECT)
            .try_with_sql(sql)
            .map_err(syntax_error)?;
        Ok(EmberParser { parser })
    }

    fn parse_statements(&mut self) -> Result<Vec<EmberStatement>> {
        let mut out = Vec::new();
        let mut expecting_delimiter = false;
        loop {
            while self.parser.consume_token(&Token::SemiColon) {
                expecting_delimiter = false;
            }
            if self.parser.peek_token_ref().token == Token::EOF {
                break;
            }
            if expecting_delimiter {
                let found = self.parser.peek_token();
                return Err(syntax_error(ParserError::ParserError(format!(
                    "Expected: end of statement, found: {found}{}",
                    at(found.span.start)
                ))));
            }
            out.push(self.parse_statement().map_err(syntax_error)?);
            expecting_delimiter = true;
        }
        Ok(out)
    }

    fn peek_word(&self, n: usize) -> Option<String> {
        match self.parser.peek_nth_token(n).token {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn parse_statement(&mut self) -> Result<EmberStatement, ParserError> {
        let first = self.peek_word(0);
        let second = self.peek_word(1);
        match (first.as_deref(), second.as_deref()) {
            (Some("COPY"), _) => {
                self.parser.next_token();
                self.parse_copy()
            }
            (Some("CHECKPOINT"), Some("TABLE")) => {
                self.parser.next_token();
                self.parser.next_token();
                let name = self.parser.parse_object_name(false)?;
                Ok(EmberStatement::CheckpointTable { name })
            }
            (Some("VACUUM"), Some("CHECKPOINTS")) => {
                self.parser.next_token();
                self.parser.next_token();
                Ok(EmberStatement::VacuumCheckpoints)
            }
            (Some("CREATE"), Some("EXTERNAL")) => {
                self.parser.next_token();
                self.parser.next_token();
                self.parse_create_external_table(false)
            }
            (Some("CREATE"), Some("OR"))
                if self.peek_word(2).as_deref() == Some("REPLACE")
                    && self.peek_word(3).as_deref() == Some("EXTERNAL") =>
            {
                for _ in 0..4 {
                    self.parser.next_token();
                }
                self.parse_create_external_table(true)
            }
            _ => Ok(EmberStatement::Sql(Box::new(
                self.parser.parse_statement()?,
            ))),
        }
    }

    /// After `COPY`: `(query) TO 'path' [STORED AS fmt]` or `t TO 'path' [STORED AS fmt]`.
    fn parse_copy(&mut self) -> Result<EmberStatement, ParserError> {
        let source = if self.parser.consume_token(&Token::LParen) {
            let query = self.parser.parse_query()?;
            self.parser.expect_token(&Token::RParen)?;
            CopySource::Query(query)
        } else {
            CopySource::Table(self.parser.parse_object_name(false)?)
        };
        self.parser.expect_keyword_is(Keyword::TO)?;
        let path = self.parser.parse_literal_string()?;
        let format = if self.parser.parse_keywords(&[Keyword::STORED, Keyword::AS]) {
            self.parse_file_format()?
        } else {
            FileFormat::Parquet
        };
        Ok(EmberStatement::Copy {
            source,
            path,
            format,
        })
    }

    /// After `CREATE [OR REPLACE] EXTERNAL`.
    fn parse_create_external_table(
        &mut self,
        or_replace: bool,
    ) -> Result<EmberStatement, ParserError> {
        self.parser.expect_keyword_is(Keyword::TABLE)?;
        let if_not_exists =
            self.parser
                .parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = self.parser.parse_object_name(false)?;
        if self.parser.peek_token_ref().token == Token::LParen {
            let found = self.parser.peek_token();
            return Err(ParserError::ParserError(format!(
                "CREATE EXTERNAL TABLE takes no column list (the schema is read from the files){}",
                at(found.span.start)
            )));
        }
        let mut format = None;
        let mut location = None;
        loop {
            if self.parser.parse_keywords(&[Keyword::STORED, Keyword::AS]) {
                format = Some(self.parse_file_format()?);
            } else if self.parser.parse_keyword(Keyword::LOCATION) {
                location = Some(self.parser.parse_literal_string()?);
            } else {
                break;
            }
        }
        let found = self.parser.peek_token();
        let format = match format {
            Some(f) => f,
            None => return self.parser.expected("STORED AS <format>", found),
        };
        let location = match location {
            Some(l) => l,
            None => return self.parser.expected("LOCATION '<path>'", found),
        };
        Ok(EmberStatement::CreateExternalTable {
            or_replace,
            name,
            format,
            location,
            if_not_exists,
        })
    }

    fn parse_file_format(&mut self) -> Result<FileFormat, ParserError> {
        let tok = self.parser.next_token();
        let format = match &tok.token {
            Token::Word(w) => match w.value.to_ascii_uppercase().as_str() {
                "PARQUET" => Some(FileFormat::Parquet),
                "CSV" => Some(FileFormat::Csv),
                "JSON" | "NDJSON" | "JSONL" => Some(FileFormat::Json),
                "TEXT" | "TEXTFILE" => Some(FileFormat::Text),
                _ => None,
            },
            _ => None,
        };
        match format {
            Some(f) => Ok(f),
            None => self
                .parser
                .expected("a file format (PARQUET, CSV, JSON or TEXT)", tok),
        }
    }
}

fn at(loc: Location) -> String {
    format!(" at Line: {}, Column: {}", loc.line, loc.column)
}

/// sqlparser says "Expected: X, found: Y at Line: 3, Column: 7"; Ember says
/// "SQL error: line 3:7: Expected: X, found: Y", so every SQL error leads with where.
pub(crate) fn syntax_error(e: ParserError) -> EmberError {
    let msg = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => {
            return EmberError::Sql("the statement is nested too deeply".into())
        }
    };
    EmberError::Sql(relocate(&msg))
}

/// Moves a trailing " at Line: L, Column: C" to the front as "line L:C: ".
fn relocate(msg: &str) -> String {
    if let Some(idx) = msg.rfind(" at Line: ") {
        let (text, tail) = msg.split_at(idx);
        let tail = &tail[" at Line: ".len()..];
        if let Some((line, col)) = tail.split_once(", Column: ") {
            let col = col.trim_end();
            if line.parse::<u64>().is_ok() && col.parse::<u64>().is_ok() {
                return format!("line {line}:{col}: {text}");
            }
        }
    }
    msg.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> EmberStatement {
        let mut v = parse_sql(sql).unwrap();
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    #[test]
    fn parses_ember_statements() {
        match one("COPY (SELECT 1) TO '/tmp/x' STORED AS PARQUET") {
            EmberStatement::Copy {
                source: CopySource::Query(_),
                path,
                format: FileFormat::Parquet,
            } => assert_eq!(path, "/tmp/x"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            one("checkpoint table t"),
            EmberStatement::CheckpointTable { .. }
        ));
        assert_eq!(
            one("VACUUM CHECKPOINTS;"),
            EmberStatement::VacuumCheckpoints
        );
        match one("CREATE EXTERNAL TABLE IF NOT EXISTS t STORED AS CSV LOCATION 'data/t.csv'") {
            EmberStatement::CreateExternalTable {
                format,
                location,
                if_not_exists,
                ..
            } => {
                assert_eq!(format, FileFormat::Csv);
                assert_eq!(location, "data/t.csv");
                assert!(if_not_exists);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_several_statements() {
        let v = parse_sql("SELECT 1; VACUUM CHECKPOINTS; SELECT 2").unwrap();
        assert_eq!(v.len(), 3);
        assert!(matches!(v[0], EmberStatement::Sql(_)));
    }

    #[test]
    fn syntax_errors_lead_with_line_and_column() {
        let err = parse_sql("SELECT a FROM\n  WHERE x").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("SQL error: line 2:3: "), "{msg}");
        let err = parse_sql("SELECT a\nFROM t WHERE").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("SQL error: line 2:13: "), "{msg}");
        let err = parse_sql("CREATE EXTERNAL TABLE t LOCATION 'x'").unwrap_err();
        assert!(err.to_string().contains("STORED AS"), "{err}");
        let err = parse_sql("COPY (SELECT 1) TO 'x' STORED AS EXCEL").unwrap_err();
        assert!(err.to_string().contains("line 1:34"), "{err}");
    }
}
