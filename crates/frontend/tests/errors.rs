//! Error messages say what is wrong and where: the user should be able to fix the query
//! from the message alone.

use ember_frontend::prelude::*;

fn session() -> Session {
    let s = Session::new();
    s.sql("CREATE TABLE lineitem (l_orderkey BIGINT, l_quantity DOUBLE, l_shipdate DATE)")
        .expect("create table");
    s
}

fn error_of(sql: &str) -> String {
    match session().sql(sql) {
        Ok(df) => match df.collect() {
            Ok(_) => panic!("expected an error from: {sql}"),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    }
}

#[test]
fn syntax_error_has_line_and_column() {
    let msg = error_of("SELECT l_orderkey\nFROM lineitem\nWHERE l_quantity >");
    assert!(msg.contains("line 3:"), "{msg}");
}

#[test]
fn syntax_error_in_a_later_statement_keeps_its_position_in_the_script() {
    let msg = error_of("SELECT 1;\n\nSELECT FROM WHERE;");
    assert!(msg.contains("line 3:"), "{msg}");
}

#[test]
fn unknown_table_suggests_the_closest_name() {
    let msg = error_of("SELECT * FROM lineitems");
    assert!(msg.contains("'lineitems'"), "{msg}");
    assert!(msg.contains("Did you mean 'lineitem'"), "{msg}");
}

#[test]
fn unknown_column_suggests_the_closest_name() {
    let msg = error_of("SELECT l_quantty FROM lineitem");
    assert!(msg.contains("l_quantty"), "{msg}");
    assert!(msg.contains("l_quantity"), "{msg}");
}

#[test]
fn type_error_names_the_expression() {
    let msg = error_of("SELECT l_shipdate * l_quantity FROM lineitem");
    assert!(msg.contains("l_shipdate"), "{msg}");
    assert!(msg.contains('*'), "{msg}");
}

#[test]
fn missing_file_names_the_path() {
    let path = "/definitely/not/here/data.parquet";
    let msg = Session::new().read_parquet(path).unwrap_err().to_string();
    assert!(msg.contains(path), "{msg}");
    let msg = error_of("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/no/such/dir/x.csv'");
    assert!(msg.contains("/no/such/dir/x.csv"), "{msg}");
}

#[test]
fn dataframe_errors_surface_when_building_not_when_running() {
    let df = session().table("lineitem").unwrap();
    let msg = df
        .filter(col("l_qty").gt(lit(1i64)))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("l_qty"), "{msg}");
    let msg = df.filter(col("l_quantity")).unwrap_err().to_string();
    assert!(msg.contains("must be boolean"), "{msg}");
    let msg = df
        .group_by(vec![col("l_orderkey")])
        .agg(vec![col("l_quantity")])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not an aggregate"), "{msg}");
}

#[test]
fn invalid_configuration_is_rejected_with_the_key() {
    let msg = Session::builder()
        .config("ember.sql.shuffle.partitions", "zero")
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("invalid value 'zero' for ember.sql.shuffle.partitions"),
        "{msg}"
    );
    let msg = error_of("SET shuffle.partitions = 3");
    assert!(msg.contains("'shuffle.partitions'"), "{msg}");
}

#[test]
fn not_yet_supported_statements_say_so() {
    let msg = error_of("SELECT sum(1) OVER ()");
    assert!(msg.starts_with("Not supported"), "{msg}");
    assert!(msg.contains("window function"), "{msg}");
}
