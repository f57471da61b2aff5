//! The `ember` binary, run as a user would: `-c`, `-f`, `--format`, `--conf`, exit codes.

use std::process::{Command, Output};

fn ember(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .output()
        .expect("run the ember binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn csv_output_has_a_header_plain_numbers_iso_dates_and_empty_nulls() {
    let out = ember(&[
        "--format",
        "csv",
        "-c",
        "CREATE TABLE t AS SELECT * FROM (VALUES (1, CAST(2.50 AS DECIMAL(10,2)), DATE '2024-01-31', 'a,b'), (2, NULL, NULL, NULL)) AS v(id, price, day, note)",
        "-c",
        "SELECT * FROM t ORDER BY id",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "id,price,day,note\n1,2.50,2024-01-31,\"a,b\"\n2,,,\n"
    );
}

#[test]
fn json_output_is_one_object_per_row() {
    let out = ember(&["--format", "json", "-c", "SELECT 1 AS a, 'x' AS b"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"a":1,"b":"x"}"#);
}

#[test]
fn table_output_shows_rows_and_timing() {
    let out = ember(&["-c", "SELECT 42 AS answer"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("| answer |"), "{text}");
    assert!(text.contains("| 42     |"), "{text}");
    assert!(text.contains("1 row in "), "{text}");
}

#[test]
fn errors_exit_non_zero_with_the_message() {
    let out = ember(&["-c", "SELECT * FROM nowhere"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("table 'nowhere' not found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn files_run_statement_by_statement_and_conf_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "CREATE TABLE t (x BIGINT);\nINSERT INTO t VALUES (1), (2), (3);\nSELECT SUM(x) AS s FROM t;\nSHOW ember.sql.shuffle.partitions;\n",
    )
    .unwrap();
    let out = ember(&[
        "--format",
        "csv",
        "--conf",
        "ember.sql.shuffle.partitions=7",
        "-f",
        script.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "s\n6\nkey,value\nember.sql.shuffle.partitions,7\n"
    );
}

#[test]
fn bad_conf_is_rejected() {
    let out = ember(&["--conf", "ember.executor.instances=x", "-c", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid value 'x' for ember.executor.instances"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn copy_writes_parquet_parts_and_success_marker() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out");
    let target = target.to_str().unwrap();
    let out = ember(&[
        "-c",
        &format!("COPY (SELECT * FROM (VALUES (1), (2)) AS v(x)) TO '{target}' STORED AS PARQUET"),
        "--format",
        "csv",
        "-c",
        &format!("SELECT SUM(x) AS s FROM read_parquet('{target}')"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "s\n3\n");
    assert!(std::path::Path::new(target).join("_SUCCESS").exists());
    assert!(std::path::Path::new(target)
        .join("part-00000.parquet")
        .exists());
}
