//! Plan-shape tests for the SQL planner, against a tiny in-test catalog, plus all 22 TPC-H
//! queries against the TPC-H schemas.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::ScalarValue;

use ember_planner::expr::{Expr, Subquery};
use ember_planner::logical::LogicalPlan;
use ember_planner::table::{ScanPartition, ScanRequest, TableSource};
use ember_planner::{plan_err, Result};

use super::statement::ExplainKind;
use super::{plan_sql, ContextProvider, FileFormat, PlannedStatement};

/// A table with a schema and no data.
#[derive(Debug)]
struct TestTable(SchemaRef);

impl TableSource for TestTable {
    fn schema(&self) -> SchemaRef {
        self.0.clone()
    }
    fn scan(&self, _request: &ScanRequest) -> Result<Vec<Arc<dyn ScanPartition>>> {
        Ok(vec![])
    }
    fn identity(&self) -> String {
        "test".into()
    }
    fn kind(&self) -> &str {
        "test"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[derive(Default)]
struct TestContext {
    tables: HashMap<String, Arc<dyn TableSource>>,
    views: HashMap<String, Arc<LogicalPlan>>,
}

impl TestContext {
    fn with_table(mut self, name: &str, fields: Vec<(&str, DataType, bool)>) -> Self {
        let schema = Schema::new(
            fields
                .into_iter()
                .map(|(n, t, nullable)| Field::new(n, t, nullable))
                .collect::<Vec<_>>(),
        );
        self.tables
            .insert(name.to_string(), Arc::new(TestTable(Arc::new(schema))));
        self
    }
}

impl ContextProvider for TestContext {
    fn get_table(&self, name: &str) -> Option<Arc<dyn TableSource>> {
        self.tables.get(&name.to_ascii_lowercase()).cloned()
    }
    fn get_view(&self, name: &str) -> Option<Arc<LogicalPlan>> {
        self.views.get(&name.to_ascii_lowercase()).cloned()
    }
    fn get_udf(&self, name: &str) -> Option<(Vec<DataType>, DataType)> {
        (name == "double_it").then(|| (vec![DataType::Int64], DataType::Int64))
    }
    fn table_function(&self, name: &str, args: &[String]) -> Result<Arc<dyn TableSource>> {
        match (name, args) {
            ("read_parquet", [_path]) => Ok(Arc::new(TestTable(Arc::new(Schema::new(vec![
                Field::new("x", DataType::Int64, true),
            ]))))),
            _ => plan_err!("unknown table function {name}"),
        }
    }
    fn table_names(&self) -> Vec<String> {
        self.tables
            .keys()
            .chain(self.views.keys())
            .cloned()
            .collect()
    }
}

fn ctx() -> TestContext {
    use DataType::*;
    TestContext::default()
        .with_table(
            "emp",
            vec![
                ("id", Int64, false),
                ("name", Utf8, true),
                ("dept", Int64, true),
                ("salary", Decimal128(10, 2), true),
                ("hired", Date32, true),
                ("tags", List(Arc::new(Field::new("item", Utf8, true))), true),
            ],
        )
        .with_table(
            "dept",
            vec![
                ("id", Int64, false),
                ("dname", Utf8, true),
                ("dept", Int32, true),
            ],
        )
}

fn plan_with(sql: &str, ctx: &TestContext) -> Arc<LogicalPlan> {
    let mut stmts = plan_sql(sql, ctx).unwrap_or_else(|e| panic!("{sql}\n{e}"));
    match stmts.remove(0) {
        PlannedStatement::Query(p) => p,
        other => panic!("not a query: {other:?}"),
    }
}

fn plan(sql: &str) -> String {
    plan_with(sql, &ctx()).display_indent()
}

fn err(sql: &str) -> String {
    match plan_sql(sql, &ctx()) {
        Ok(p) => panic!("expected an error for {sql}, got {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_plan(sql: &str, expected: &str) {
    let actual = plan(sql);
    let expected: String = expected
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{}\n", &l[common_indent(expected)..]))
        .collect();
    assert_eq!(actual, expected, "\nactual:\n{actual}");
}

fn common_indent(s: &str) -> usize {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0)
}

#[test]
fn select_where_order_limit() {
    assert_plan(
        "SELECT name, salary * 2 AS s FROM emp WHERE dept = 1 ORDER BY s DESC LIMIT 3 OFFSET 1",
        "
        Limit: skip=1, fetch=3
          Sort: s DESC NULLS FIRST
            Projection: emp.name, (emp.salary * 2) AS s
              Filter: (emp.dept = 1)
                TableScan: emp
        ",
    );
}

#[test]
fn identifiers_are_case_insensitive() {
    assert_plan(
        "SELECT NAME FROM EMP E WHERE E.Dept IS NOT NULL",
        "
        Projection: e.name
          Filter: e.dept IS NOT NULL
            SubqueryAlias: e
              TableScan: emp
        ",
    );
}

#[test]
fn group_by_alias_ordinal_having_and_hidden_order_by() {
    assert_plan(
        "SELECT dept AS d, count(*) AS n, sum(salary) FROM emp GROUP BY d HAVING count(*) > 1 ORDER BY max(salary), 1",
        "
        Projection: d, n, sum(emp.salary)
          Sort: max(emp.salary) ASC NULLS LAST, d ASC NULLS LAST
            Projection: emp.dept AS d, count(*) AS n, sum(emp.salary), max(emp.salary)
              Filter: (count(*) > 1)
                Aggregate: groupBy=[emp.dept], aggr=[count(*), sum(emp.salary), max(emp.salary)]
                  TableScan: emp
        ",
    );
    // GROUP BY ordinal and ORDER BY an expression of the select list.
    assert_plan(
        "SELECT upper(name), count(DISTINCT dept) FROM emp GROUP BY 1 ORDER BY upper(name)",
        "
        Sort: upper(emp.name) ASC NULLS LAST
          Projection: upper(emp.name), count(DISTINCT emp.dept)
            Aggregate: groupBy=[upper(emp.name)], aggr=[count(DISTINCT emp.dept)]
              TableScan: emp
        ",
    );
}

#[test]
fn order_by_column_not_in_select_list() {
    assert_plan(
        "SELECT name FROM emp ORDER BY hired DESC NULLS LAST",
        "
        Projection: emp.name
          Sort: emp.hired DESC NULLS LAST
            Projection: emp.name, emp.hired
              TableScan: emp
        ",
    );
}

#[test]
fn non_grouped_column_is_an_error() {
    let e = err("SELECT name, count(*) FROM emp GROUP BY dept");
    assert!(e.contains("must appear in the GROUP BY"), "{e}");
}

#[test]
fn joins_on_using_and_comma() {
    assert_plan(
        "SELECT e.name, d.dname FROM emp e LEFT JOIN dept d ON e.dept = d.id AND d.dname <> 'x'",
        "
        Projection: e.name, d.dname
          Left Join: on=[e.dept = d.id] filter=(d.dname <> 'x')
            SubqueryAlias: e
              TableScan: emp
            SubqueryAlias: d
              TableScan: dept
        ",
    );
    // USING merges the key column; the Int64/Int32 keys are cast to a common type.
    assert_plan(
        "SELECT * FROM emp JOIN dept USING (dept)",
        "
        Projection: emp.dept, emp.id, emp.name, emp.salary, emp.hired, emp.tags, dept.id, dept.dname
          Projection: emp.dept, emp.id, emp.name, emp.salary, emp.hired, emp.tags, dept.id, dept.dname
            Inner Join: on=[emp.dept = CAST(dept.dept AS Int64)]
              TableScan: emp
              TableScan: dept
        ",
    );
    assert_plan(
        "SELECT emp.name FROM emp, dept WHERE emp.dept = dept.id",
        "
        Projection: emp.name
          Filter: (emp.dept = dept.id)
            CrossJoin
              TableScan: emp
              TableScan: dept
        ",
    );
    assert_plan(
        "SELECT * FROM emp FULL OUTER JOIN dept ON emp.id < dept.id",
        "
        Projection: emp.id, emp.name, emp.dept, emp.salary, emp.hired, emp.tags, dept.id, dept.dname, dept.dept
          Full Join: on=[] filter=(emp.id < dept.id)
            TableScan: emp
            TableScan: dept
        ",
    );
}

#[test]
fn ambiguous_and_unknown_names() {
    let e = err("SELECT id FROM emp, dept");
    assert!(e.contains("ambiguous"), "{e}");
    let e = err("SELECT nme FROM emp");
    assert!(
        e.contains("column 'nme' not found. Did you mean 'name'?"),
        "{e}"
    );
    assert!(e.contains("(at line 1:8)"), "{e}");
    let e = err("SELECT * FROM empp");
    assert!(
        e.contains("table 'empp' not found. Did you mean 'emp'?"),
        "{e}"
    );
    assert!(e.contains("(at line 1:15)"), "{e}");
    let e = err("SELECT frobnicate(id) FROM emp");
    assert!(e.contains("unknown function 'frobnicate'"), "{e}");
    let e = err("SELECT name + 1 FROM emp WHERE hired");
    assert!(e.contains("WHERE condition must be boolean"), "{e}");
}

#[test]
fn syntax_error_has_location() {
    let e = err("SELECT id\nFROM emp WHERE");
    assert!(e.starts_with("SQL error: line 2:15: "), "{e}");
}

#[test]
fn derived_tables_ctes_and_views() {
    assert_plan(
        "WITH t(a, b) AS (SELECT id, name FROM emp) SELECT x.a FROM t AS x JOIN t ON x.a = t.a",
        "
        Projection: x.a
          Inner Join: on=[x.a = t.a]
            SubqueryAlias: x
              SubqueryAlias: t
                Projection: emp.id AS a, emp.name AS b
                  Projection: emp.id, emp.name
                    TableScan: emp
            SubqueryAlias: t
              Projection: emp.id AS a, emp.name AS b [shared #5, shown above]
        ",
    );
    // Both references to the CTE share one plan node.
    let p = plan_with(
        "WITH t AS (SELECT id FROM emp) SELECT * FROM t a, t b",
        &ctx(),
    );
    let LogicalPlan::Projection(proj) = p.as_ref() else {
        panic!("{p}")
    };
    let LogicalPlan::CrossJoin(cj) = proj.input.as_ref() else {
        panic!("{p}")
    };
    let inner = |p: &LogicalPlan| match p {
        LogicalPlan::SubqueryAlias(a) => match a.input.as_ref() {
            LogicalPlan::SubqueryAlias(b) => Arc::as_ptr(&b.input),
            _ => panic!(),
        },
        _ => panic!(),
    };
    assert_eq!(inner(&cj.left), inner(&cj.right));

    let mut c = ctx();
    let view = plan_with("SELECT id, name FROM emp WHERE dept = 2", &c);
    c.views.insert("v".into(), view);
    assert_plan_with(
        &c,
        "SELECT name FROM v",
        "
        Projection: v.name
          SubqueryAlias: v
            Projection: emp.id, emp.name
              Filter: (emp.dept = 2)
                TableScan: emp
        ",
    );
}

fn assert_plan_with(c: &TestContext, sql: &str, expected: &str) {
    let actual = plan_with(sql, c).display_indent();
    let indent = common_indent(expected);
    let expected: String = expected
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{}\n", &l[indent..]))
        .collect();
    assert_eq!(actual, expected, "\nactual:\n{actual}");
}

#[test]
fn set_operations_and_values() {
    assert_plan(
        "SELECT id FROM emp UNION SELECT dept FROM dept ORDER BY 1",
        "
        Sort: emp.id ASC NULLS LAST
          Distinct
            Union
              Projection: emp.id
                TableScan: emp
              Projection: CAST(dept.dept AS Int64) AS id
                Projection: dept.dept
                  TableScan: dept
        ",
    );
    assert_plan(
        "SELECT id FROM emp EXCEPT SELECT id FROM dept",
        "
        Projection: emp.id
          Filter: (__set_last = 1)
            Aggregate: groupBy=[emp.id], aggr=[min(__set_side) AS __set_first, max(__set_side) AS __set_last]
              Union
                Projection: emp.id, 1 AS __set_side
                  Projection: emp.id
                    TableScan: emp
                Projection: dept.id, 2 AS __set_side
                  Projection: dept.id
                    TableScan: dept
        ",
    );
    assert_plan(
        "SELECT * FROM (VALUES (1, 'a'), (2.5, NULL)) AS v(n, s)",
        "
        Projection: v.n, v.s
          SubqueryAlias: v
            Projection: column1 AS n, column2 AS s
              Values: 2 rows
        ",
    );
    let e = err("SELECT id, name FROM emp UNION SELECT id FROM dept");
    assert!(e.contains("different numbers of columns"), "{e}");
}

#[test]
fn literals_are_typed_exactly() {
    let p = plan_with(
        "SELECT 0.06, 42, date '1998-12-01' - interval '90' day, interval '3' month, 'x', -1.5",
        &ctx(),
    );
    let LogicalPlan::Projection(proj) = p.as_ref() else {
        panic!("{p}")
    };
    assert_eq!(
        proj.exprs[0],
        Expr::Literal(ScalarValue::Decimal128(Some(6), 2, 2))
    );
    assert_eq!(proj.exprs[1], Expr::Literal(ScalarValue::Int64(Some(42))));
    let types: Vec<DataType> = proj
        .schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(types[2], DataType::Date32);
    assert_eq!(types[5], DataType::Decimal128(2, 1));
    assert!(matches!(p.inputs()[0].as_ref(), LogicalPlan::EmptyRelation(e) if e.produce_one_row));
}

#[test]
fn expressions() {
    assert_plan(
        "SELECT CASE WHEN salary > 10 THEN 'hi' ELSE 'lo' END, CAST(id AS VARCHAR), id::double, \
         extract(year from hired), substring(name from 2 for 3), coalesce(name, 'n'), \
         name LIKE 'a%', name NOT ILIKE 'b%', id BETWEEN 1 AND 5, id IN (1, 2), name || '!', id % 2, \
         trim(name), double_it(dept) FROM emp",
        "
        Projection: CASE WHEN (emp.salary > 10) THEN 'hi' ELSE 'lo' END, CAST(emp.id AS Utf8), CAST(emp.id AS Float64), date_part('year', emp.hired), substring(emp.name, 2, 3), coalesce(emp.name, 'n'), emp.name LIKE 'a%', emp.name NOT ILIKE 'b%', emp.id BETWEEN 1 AND 5, emp.id IN (1, 2), (emp.name || '!'), (emp.id % 2), trim(emp.name), double_it(emp.dept)
          TableScan: emp
        ",
    );
}

#[test]
fn table_functions_and_unnest() {
    assert_plan(
        "SELECT x FROM read_parquet('/data/x.parquet') WHERE x > 1",
        "
        Projection: read_parquet.x
          Filter: (read_parquet.x > 1)
            TableScan: read_parquet
        ",
    );
    assert_plan(
        "SELECT id, unnest(tags) AS tag FROM emp",
        "
        Projection: emp.id, tag
          Unnest: tag
            Projection: emp.id, emp.name, emp.dept, emp.salary, emp.hired, emp.tags, emp.tags AS tag
              TableScan: emp
        ",
    );
    assert_plan(
        "SELECT * FROM unnest([1, 2, 3]) AS u(v)",
        "
        Projection: u.v
          SubqueryAlias: u
            Projection: unnest AS v
              Unnest: unnest
                Projection: [1, 2, 3] AS unnest
                  EmptyRelation: produce_one_row=true
        ",
    );
}

/// The subquery inside the first expression of a plan node matching `pick`.
fn find_subquery(plan: &LogicalPlan) -> Option<Subquery> {
    let mut found = None;
    for e in plan.expressions() {
        e.visit(&mut |n| {
            match n {
                Expr::ScalarSubquery(s)
                | Expr::InSubquery { subquery: s, .. }
                | Expr::Exists { subquery: s, .. } => {
                    found.get_or_insert_with(|| s.clone());
                }
                _ => {}
            }
            true
        });
    }
    found.or_else(|| plan.inputs().into_iter().find_map(|i| find_subquery(i)))
}

#[test]
fn correlated_subqueries_use_outer_columns() {
    let p = plan_with(
        "SELECT name FROM emp e WHERE salary > (SELECT avg(salary) FROM emp i WHERE i.dept = e.dept) \
         AND EXISTS (SELECT 1 FROM dept d WHERE d.id = e.dept) AND id NOT IN (SELECT id FROM dept)",
        &ctx(),
    );
    let text = p.display_indent();
    assert!(
        text.contains("Filter: (((e.salary > (<subquery>)) AND EXISTS (<subquery>)) AND e.id NOT IN (<subquery>))"),
        "{text}"
    );
    let sq = find_subquery(&p).expect("a subquery");
    assert_eq!(
        sq.outer_refs,
        vec![ember_planner::schema::Column::new(Some("e"), "dept")]
    );
    let inner = sq.plan.display_indent();
    assert!(
        inner.contains("Filter: (i.dept = outer(e.dept))"),
        "{inner}"
    );
}

#[test]
fn statements() {
    let c = ctx();
    let plan1 = |sql: &str| {
        let mut v = plan_sql(sql, &c).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(v.len(), 1);
        v.remove(0)
    };
    assert!(matches!(
        plan1("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/x'"),
        PlannedStatement::CreateExternalTable {
            format: FileFormat::Parquet,
            ..
        }
    ));
    match plan1("CREATE TABLE t (a INT NOT NULL, b DECIMAL(15,2), c VARCHAR, d DATE)") {
        PlannedStatement::CreateTable { name, schema, .. } => {
            assert_eq!(name, "t");
            assert_eq!(schema.field(0).data_type(), &DataType::Int32);
            assert!(!schema.field(0).is_nullable());
            assert_eq!(schema.field(1).data_type(), &DataType::Decimal128(15, 2));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        plan1("CREATE TABLE t2 AS SELECT * FROM emp"),
        PlannedStatement::CreateTableAs { .. }
    ));
    assert!(matches!(
        plan1("CREATE OR REPLACE VIEW v AS SELECT id FROM emp"),
        PlannedStatement::CreateView {
            or_replace: true,
            ..
        }
    ));
    match plan1("INSERT INTO dept (dname, id) VALUES ('a', 1)") {
        PlannedStatement::Insert { table, plan } => {
            assert_eq!(table, "dept");
            assert_eq!(
                plan.describe_node(),
                "Projection: column2 AS id, column1 AS dname, CAST(NULL AS Int32) AS dept"
            );
        }
        other => panic!("{other:?}"),
    }
    let e = plan_sql("INSERT INTO dept VALUES (1, 'a')", &c).unwrap_err();
    assert!(
        e.to_string()
            .contains("3 target columns but the query produces 2"),
        "{e}"
    );
    let drops = plan_sql("DROP TABLE IF EXISTS a, b", &c).unwrap();
    assert_eq!(drops.len(), 2);
    assert!(matches!(
        plan1("DROP VIEW v"),
        PlannedStatement::DropView {
            if_exists: false,
            ..
        }
    ));
    assert!(matches!(plan1("SHOW TABLES"), PlannedStatement::ShowTables));
    assert!(matches!(
        plan1("DESCRIBE emp"),
        PlannedStatement::Describe { .. }
    ));
    match plan1("SHOW COLUMNS FROM emp") {
        PlannedStatement::Describe { name } => assert_eq!(name, "emp"),
        other => panic!("{other:?}"),
    }
    let e = plan_sql(
        "CREATE OR REPLACE EXTERNAL TABLE t STORED AS CSV LOCATION 'x'",
        &c,
    )
    .unwrap_err();
    assert!(e.to_string().contains("DROP TABLE IF EXISTS t"), "{e}");
    assert!(matches!(
        plan1("EXPLAIN ANALYZE SELECT 1"),
        PlannedStatement::Explain {
            kind: ExplainKind::Analyze,
            ..
        }
    ));
    assert!(matches!(
        plan1("EXPLAIN SELECT 1"),
        PlannedStatement::Explain {
            kind: ExplainKind::Plan,
            ..
        }
    ));
    match plan1("SET ember.task.maxFailures = 3") {
        PlannedStatement::Set { key, value } => {
            assert_eq!(
                (key.as_str(), value.as_str()),
                ("ember.task.maxFailures", "3")
            )
        }
        other => panic!("{other:?}"),
    }
    match plan1("SET ember.checkpoint.dir = '/tmp/ck'") {
        PlannedStatement::Set { value, .. } => assert_eq!(value, "/tmp/ck"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        plan1("SHOW ALL"),
        PlannedStatement::Show { key: None }
    ));
    match plan1("SHOW ember.task.maxFailures") {
        PlannedStatement::Show { key } => {
            assert_eq!(key.as_deref(), Some("ember.task.maxFailures"))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        plan1("CACHE TABLE emp"),
        PlannedStatement::CacheTable { plan: None, .. }
    ));
    assert!(matches!(
        plan1("CACHE TABLE hot AS SELECT * FROM emp"),
        PlannedStatement::CacheTable { plan: Some(_), .. }
    ));
    assert!(matches!(
        plan1("UNCACHE TABLE emp"),
        PlannedStatement::UncacheTable { .. }
    ));
    assert!(matches!(
        plan1("COPY (SELECT * FROM emp) TO '/tmp/out' STORED AS PARQUET"),
        PlannedStatement::Copy {
            format: FileFormat::Parquet,
            ..
        }
    ));
    assert!(matches!(
        plan1("CHECKPOINT TABLE emp"),
        PlannedStatement::CheckpointTable { .. }
    ));
    assert!(matches!(
        plan1("VACUUM CHECKPOINTS"),
        PlannedStatement::VacuumCheckpoints
    ));
    let e = plan_sql("GRANT SELECT ON emp TO bob", &c).unwrap_err();
    assert!(
        e.to_string().contains("Not supported: statement GRANT"),
        "{e}"
    );
}

fn tpch_context() -> TestContext {
    use DataType::*;
    let money = || Decimal128(15, 2);
    TestContext::default()
        .with_table(
            "nation",
            vec![
                ("n_nationkey", Int64, false),
                ("n_name", Utf8, false),
                ("n_regionkey", Int64, false),
                ("n_comment", Utf8, false),
            ],
        )
        .with_table(
            "region",
            vec![
                ("r_regionkey", Int64, false),
                ("r_name", Utf8, false),
                ("r_comment", Utf8, false),
            ],
        )
        .with_table(
            "part",
            vec![
                ("p_partkey", Int64, false),
                ("p_name", Utf8, false),
                ("p_mfgr", Utf8, false),
                ("p_brand", Utf8, false),
                ("p_type", Utf8, false),
                ("p_size", Int32, false),
                ("p_container", Utf8, false),
                ("p_retailprice", money(), false),
                ("p_comment", Utf8, false),
            ],
        )
        .with_table(
            "supplier",
            vec![
                ("s_suppkey", Int64, false),
                ("s_name", Utf8, false),
                ("s_address", Utf8, false),
                ("s_nationkey", Int64, false),
                ("s_phone", Utf8, false),
                ("s_acctbal", money(), false),
                ("s_comment", Utf8, false),
            ],
        )
        .with_table(
            "partsupp",
            vec![
                ("ps_partkey", Int64, false),
                ("ps_suppkey", Int64, false),
                ("ps_availqty", Int32, false),
                ("ps_supplycost", money(), false),
                ("ps_comment", Utf8, false),
            ],
        )
        .with_table(
            "customer",
            vec![
                ("c_custkey", Int64, false),
                ("c_name", Utf8, false),
                ("c_address", Utf8, false),
                ("c_nationkey", Int64, false),
                ("c_phone", Utf8, false),
                ("c_acctbal", money(), false),
                ("c_mktsegment", Utf8, false),
                ("c_comment", Utf8, false),
            ],
        )
        .with_table(
            "orders",
            vec![
                ("o_orderkey", Int64, false),
                ("o_custkey", Int64, false),
                ("o_orderstatus", Utf8, false),
                ("o_totalprice", money(), false),
                ("o_orderdate", Date32, false),
                ("o_orderpriority", Utf8, false),
                ("o_clerk", Utf8, false),
                ("o_shippriority", Int32, false),
                ("o_comment", Utf8, false),
            ],
        )
        .with_table(
            "lineitem",
            vec![
                ("l_orderkey", Int64, false),
                ("l_partkey", Int64, false),
                ("l_suppkey", Int64, false),
                ("l_linenumber", Int32, false),
                ("l_quantity", money(), false),
                ("l_extendedprice", money(), false),
                ("l_discount", money(), false),
                ("l_tax", money(), false),
                ("l_returnflag", Utf8, false),
                ("l_linestatus", Utf8, false),
                ("l_shipdate", Date32, false),
                ("l_commitdate", Date32, false),
                ("l_receiptdate", Date32, false),
                ("l_shipinstruct", Utf8, false),
                ("l_shipmode", Utf8, false),
                ("l_comment", Utf8, false),
            ],
        )
}

#[test]
fn all_tpch_queries_plan() {
    let c = tpch_context();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/tpch/queries");
    let dir = std::path::Path::new(dir);
    let dir = if dir.exists() {
        dir.to_path_buf()
    } else {
        std::path::PathBuf::from("/work/shared/tpch/queries")
    };
    let mut failures = Vec::new();
    for q in 1..=22 {
        let path = dir.join(format!("q{q:02}.sql"));
        let sql = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        match plan_sql(&sql, &c) {
            Ok(stmts) => {
                assert!(
                    stmts
                        .iter()
                        .any(|s| matches!(s, PlannedStatement::Query(_))),
                    "q{q:02} has no query"
                );
                for s in &stmts {
                    if let PlannedStatement::Query(p) = s {
                        // Every schema must be computable.
                        check_schemas(p).unwrap_or_else(|e| failures.push(format!("q{q:02}: {e}")));
                    }
                }
            }
            Err(e) => failures.push(format!("q{q:02}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Types every expression of every node against its input, as later stages will.
fn check_schemas(plan: &LogicalPlan) -> Result<()> {
    for input in plan.inputs() {
        check_schemas(input)?;
    }
    if let LogicalPlan::Filter(f) = plan {
        f.predicate.data_type(f.input.schema())?;
    }
    if let LogicalPlan::Sort(s) = plan {
        for e in &s.exprs {
            e.expr.data_type(s.input.schema())?;
        }
    }
    Ok(())
}

#[test]
fn type_errors_name_the_expression_and_place() {
    let e = err("SELECT id,\n  name + hired FROM emp");
    assert!(e.contains("cannot apply '+' to Utf8 and Date32"), "{e}");
    assert!(e.contains("(emp.name + emp.hired)"), "{e}");
    assert!(e.contains("(at line 2:3)"), "{e}");
}

#[test]
fn having_and_order_by_may_use_aliases() {
    assert_plan(
        "SELECT dept, count(*) AS n FROM emp GROUP BY dept HAVING n > 1 ORDER BY n + 1 DESC",
        "
        Projection: emp.dept, n
          Sort: (count(*) + 1) DESC NULLS FIRST
            Projection: emp.dept, count(*) AS n, (count(*) + 1)
              Filter: (count(*) > 1)
                Aggregate: groupBy=[emp.dept], aggr=[count(*)]
                  TableScan: emp
        ",
    );
    let e = err("SELECT DISTINCT name FROM emp ORDER BY id");
    assert!(
        e.contains("SELECT DISTINCT, ORDER BY expressions must appear"),
        "{e}"
    );
    let e = err("SELECT name FROM emp WHERE count(*) > 1");
    assert!(e.contains("not allowed in WHERE"), "{e}");
}

#[test]
fn intersect_nested_joins_and_semi_joins() {
    assert_plan(
        "SELECT dept FROM emp INTERSECT SELECT id FROM dept",
        "
        Projection: emp.dept
          Filter: ((__set_first = 1) AND (__set_last = 2))
            Aggregate: groupBy=[emp.dept], aggr=[min(__set_side) AS __set_first, max(__set_side) AS __set_last]
              Union
                Projection: emp.dept, 1 AS __set_side
                  Projection: emp.dept
                    TableScan: emp
                Projection: dept.id, 2 AS __set_side
                  Projection: dept.id
                    TableScan: dept
        ",
    );
    assert_plan(
        "SELECT a.id FROM emp a JOIN (emp b CROSS JOIN dept c) ON a.id = b.id AND a.dept = c.id",
        "
        Projection: a.id
          Inner Join: on=[a.id = b.id, a.dept = c.id]
            SubqueryAlias: a
              TableScan: emp
            CrossJoin
              SubqueryAlias: b
                TableScan: emp
              SubqueryAlias: c
                TableScan: dept
        ",
    );
}

#[test]
fn subquery_outer_refs_reach_through_levels() {
    // The innermost subquery reads e.dept two levels out: both subqueries report it.
    let p = plan_with(
        "SELECT id FROM emp e WHERE EXISTS (SELECT 1 FROM dept d WHERE d.id IN \
         (SELECT x.id FROM emp x WHERE x.dept = e.dept))",
        &ctx(),
    );
    let outer = find_subquery(&p).expect("EXISTS subquery");
    assert_eq!(
        outer.outer_refs,
        vec![ember_planner::schema::Column::new(Some("e"), "dept")]
    );
    let inner = find_subquery(&outer.plan).expect("IN subquery");
    assert_eq!(inner.outer_refs, outer.outer_refs);
}
