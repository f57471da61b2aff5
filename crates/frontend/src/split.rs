//! Splitting a SQL script into statements, so each statement is planned only after the
//! previous one ran (`CREATE TABLE t AS ...; SELECT * FROM t` must see `t`).
//!
//! Each piece keeps its original position: the text before it is replaced by the same
//! number of line breaks and spaces, so an error in the third statement of a file still
//! says the line and column where it is in the file.

use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

/// The statements of `sql`, each padded to its original line and column. Pieces holding
/// only whitespace and comments are dropped. Text the tokenizer rejects is returned whole,
/// so the parser reports the error with its location.
pub fn split_statements(sql: &str) -> Vec<String> {
    let tokens = match Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() {
        Ok(tokens) => tokens,
        Err(_) => return vec![sql.to_string()],
    };
    let line_starts = line_starts(sql);
    // (start, end) byte offsets of each statement with at least one real token.
    let mut pieces = Vec::new();
    let mut start = 0usize;
    let mut has_content = false;
    for t in &tokens {
        match &t.token {
            Token::SemiColon => {
                let end = byte_offset(sql, &line_starts, t.span.start.line, t.span.start.column);
                if has_content {
                    pieces.push((start, end));
                }
                start = (end + 1).min(sql.len());
                has_content = false;
            }
            Token::Whitespace(_) | Token::EOF => {}
            _ => has_content = true,
        }
    }
    if has_content {
        pieces.push((start, sql.len()));
    }
    if pieces.len() == 1 {
        return vec![sql.to_string()];
    }
    pieces
        .into_iter()
        .map(|(s, e)| pad_to(sql, s) + &sql[s..e])
        .collect()
}

/// Byte offset of the first character of each line.
fn line_starts(sql: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// The byte offset of a 1-based (line, column-in-characters) location.
fn byte_offset(sql: &str, line_starts: &[usize], line: u64, column: u64) -> usize {
    let line_start = usize::try_from(line.saturating_sub(1))
        .ok()
        .and_then(|l| line_starts.get(l).copied())
        .unwrap_or(sql.len());
    let column = usize::try_from(column.saturating_sub(1)).unwrap_or(0);
    sql[line_start..]
        .char_indices()
        .nth(column)
        .map_or(sql.len(), |(i, _)| line_start + i)
}

/// Line breaks and spaces that put the next character at the position of byte `offset`.
fn pad_to(sql: &str, offset: usize) -> String {
    let before = &sql[..offset];
    let lines = before.matches('\n').count();
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, last)| last)
        .chars()
        .count();
    "\n".repeat(lines) + &" ".repeat(column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_strings_and_comments() {
        let sql = "select 'a;b'; -- c;d\nselect 2;\n  ;";
        let parts = split_statements(sql);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "select 'a;b'");
        assert_eq!(parts[1].trim(), "-- c;d\nselect 2");
    }

    #[test]
    fn pieces_keep_their_line_and_column() {
        let sql = "select 1;\nselect\n   x;";
        let parts = split_statements(sql);
        assert_eq!(parts.len(), 2);
        let second = &parts[1];
        let x_line = second.lines().position(|l| l.contains('x')).unwrap();
        let x_col = second.lines().nth(x_line).unwrap().find('x').unwrap();
        assert_eq!((x_line, x_col), (2, 3));
    }

    #[test]
    fn single_statement_and_bad_tokens_are_returned_whole() {
        assert_eq!(split_statements("select 1;"), vec!["select 1;".to_string()]);
        assert_eq!(
            split_statements("select 'oops"),
            vec!["select 'oops".to_string()]
        );
        assert!(split_statements("  -- only a comment\n").is_empty());
    }
}
