//! Parsed statements → [`PlannedStatement`]s: DDL, DML, session commands and Ember's own
//! statements. Queries inside them are planned by `query.rs`.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use datafusion_common::ScalarValue;
use sqlparser::ast::{
    ColumnOption, CreateTable, CreateView, Expr as SqlExpr, Insert, ObjectName, ObjectType, Set,
    Statement, TableObject,
};

use ember_planner::expr::Expr;
use ember_planner::logical::{LogicalPlan, Projection};
use ember_planner::schema::Column;
use ember_planner::{not_impl_err, plan_err, EmberError, Result};

use super::expr::string_value;
use super::parser::{CopySource, EmberStatement};
use super::planner::{normalize_ident, object_name, object_name_span, Scope, SqlPlanner};
use super::statement::{ExplainKind, PlannedStatement};
use super::types::sql_to_arrow_type;

impl SqlPlanner<'_> {
    /// Plans one statement; `DROP TABLE a, b` becomes one statement per name.
    pub fn plan_statement(&self, stmt: &EmberStatement) -> Result<Vec<PlannedStatement>> {
        let scope = Scope::default();
        Ok(vec![match stmt {
            EmberStatement::Sql(s) => return self.plan_sql_statement(s, &scope),
            EmberStatement::CreateExternalTable {
                or_replace: true,
                name,
                ..
            } => {
                let name = object_name(name);
                return not_impl_err!(
                    "CREATE OR REPLACE EXTERNAL TABLE; use DROP TABLE IF EXISTS {name} first"
                );
            }
            EmberStatement::CreateExternalTable {
                name,
                format,
                location,
                if_not_exists,
                or_replace: false,
            } => PlannedStatement::CreateExternalTable {
                name: object_name(name),
                format: *format,
                location: location.clone(),
                if_not_exists: *if_not_exists,
            },
            EmberStatement::Copy {
                source,
                path,
                format,
            } => {
                let plan = match source {
                    CopySource::Query(q) => self.plan_query(q, &scope)?,
                    CopySource::Table(t) => self.scan_whole_table(t, &scope)?,
                };
                PlannedStatement::Copy {
                    plan,
                    path: path.clone(),
                    format: *format,
                }
            }
            EmberStatement::CheckpointTable { name } => PlannedStatement::CheckpointTable {
                name: object_name(name),
            },
            EmberStatement::VacuumCheckpoints => PlannedStatement::VacuumCheckpoints,
        }])
    }

    fn plan_sql_statement(&self, stmt: &Statement, scope: &Scope) -> Result<Vec<PlannedStatement>> {
        Ok(vec![match stmt {
            Statement::Query(q) => PlannedStatement::Query(self.plan_query(q, scope)?),
            Statement::CreateView(cv) => self.plan_create_view(cv, scope)?,
            Statement::CreateTable(ct) => self.plan_create_table(ct, scope)?,
            Statement::Insert(insert) => self.plan_insert(insert, scope)?,
            Statement::Drop {
                object_type,
                if_exists,
                names,
                ..
            } => {
                let make = |n: &ObjectName| match object_type {
                    ObjectType::Table => Ok(PlannedStatement::DropTable {
                        name: object_name(n),
                        if_exists: *if_exists,
                    }),
                    ObjectType::View => Ok(PlannedStatement::DropView {
                        name: object_name(n),
                        if_exists: *if_exists,
                    }),
                    other => not_impl_err!("DROP {other}"),
                };
                return names.iter().map(make).collect();
            }
            Statement::ShowTables { .. } => PlannedStatement::ShowTables,
            // `SHOW COLUMNS FROM t` is another spelling of `DESCRIBE t`.
            Statement::ShowColumns { show_options, .. } => {
                let Some(name) = show_options
                    .show_in
                    .as_ref()
                    .and_then(|i| i.parent_name.as_ref())
                else {
                    return plan_err!("SHOW COLUMNS needs FROM <table>");
                };
                PlannedStatement::Describe {
                    name: object_name(name),
                }
            }
            Statement::ExplainTable { table_name, .. } => PlannedStatement::Describe {
                name: object_name(table_name),
            },
            Statement::Explain {
                analyze, statement, ..
            } => {
                let Statement::Query(q) = statement.as_ref() else {
                    return not_impl_err!("EXPLAIN of a statement other than a query");
                };
                PlannedStatement::Explain {
                    kind: if *analyze {
                        ExplainKind::Analyze
                    } else {
                        ExplainKind::Plan
                    },
                    plan: self.plan_query(q, scope)?,
                }
            }
            Statement::Set(set) => plan_set(set)?,
            Statement::ShowVariable { variable } => {
                let key = variable
                    .iter()
                    .map(|i| i.value.clone())
                    .collect::<Vec<_>>()
                    .join(".");
                PlannedStatement::Show {
                    key: if key.eq_ignore_ascii_case("all") {
                        None
                    } else {
                        Some(key)
                    },
                }
            }
            Statement::Cache {
                table_name,
                query,
                options,
                table_flag,
                ..
            } => {
                if table_flag.is_some() || !options.is_empty() {
                    return not_impl_err!("CACHE TABLE flags or OPTIONS");
                }
                PlannedStatement::CacheTable {
                    name: object_name(table_name),
                    plan: query
                        .as_ref()
                        .map(|q| self.plan_query(q, scope))
                        .transpose()?,
                }
            }
            Statement::UNCache { table_name, .. } => PlannedStatement::UncacheTable {
                name: object_name(table_name),
            },
            other => {
                let text = other.to_string();
                let head: Vec<&str> = text.split_whitespace().take(2).collect();
                return not_impl_err!("statement {}", head.join(" "));
            }
        }])
    }

    fn plan_create_view(&self, cv: &CreateView, scope: &Scope) -> Result<PlannedStatement> {
        if cv.materialized {
            return not_impl_err!("CREATE MATERIALIZED VIEW");
        }
        let name = object_name(&cv.name);
        let plan = self.plan_query(&cv.query, scope)?;
        let plan = self.rename_columns(plan, &cv.columns, &name)?;
        Ok(PlannedStatement::CreateView {
            name,
            plan,
            or_replace: cv.or_replace,
        })
    }

    fn plan_create_table(&self, ct: &CreateTable, scope: &Scope) -> Result<PlannedStatement> {
        let name = object_name(&ct.name);
        if let Some(query) = &ct.query {
            if !ct.columns.is_empty() {
                return not_impl_err!("CREATE TABLE with both a column list and AS SELECT");
            }
            return Ok(PlannedStatement::CreateTableAs {
                name,
                plan: self.plan_query(query, scope)?,
                if_not_exists: ct.if_not_exists,
                or_replace: ct.or_replace,
            });
        }
        if ct.external {
            return plan_err!(
                "use CREATE EXTERNAL TABLE {name} STORED AS <format> LOCATION '<path>'"
            );
        }
        if ct.columns.is_empty() {
            return plan_err!("CREATE TABLE {name} needs a column list or AS SELECT");
        }
        let mut fields = Vec::with_capacity(ct.columns.len());
        for c in &ct.columns {
            let col = normalize_ident(&c.name);
            if fields.iter().any(|f: &Field| f.name() == &col) {
                return plan_err!("column '{col}' appears twice in CREATE TABLE {name}");
            }
            let data_type = sql_to_arrow_type(&c.data_type)
                .map_err(|e| e.context(format!("column '{col}' of {name}")))?;
            let not_null = c
                .options
                .iter()
                .any(|o| matches!(o.option, ColumnOption::NotNull));
            fields.push(Field::new(col, data_type, !not_null));
        }
        Ok(PlannedStatement::CreateTable {
            name,
            schema: Arc::new(Schema::new(fields)),
            if_not_exists: ct.if_not_exists,
        })
    }

    /// `INSERT INTO t [(cols)] query`: the query's columns are matched to the listed (or
    /// all) table columns by position, cast to the table's types; unlisted columns are NULL.
    fn plan_insert(&self, insert: &Insert, scope: &Scope) -> Result<PlannedStatement> {
        let TableObject::TableName(table_name) = &insert.table else {
            return not_impl_err!("INSERT INTO a table function");
        };
        if insert.overwrite || insert.on.is_some() || insert.returning.is_some() {
            return not_impl_err!("INSERT OVERWRITE / ON CONFLICT / RETURNING");
        }
        let name = object_name(table_name);
        let source = self
            .ctx
            .get_table(&name)
            .ok_or_else(|| self.table_not_found(&name, scope, object_name_span(table_name)))?;
        let table_schema = source.schema();
        let Some(query) = &insert.source else {
            return not_impl_err!("INSERT without VALUES or SELECT");
        };
        let plan = self.plan_query(query, scope)?;

        // For each table column: which query column feeds it, if any.
        let mut feeds: Vec<Option<usize>> = vec![None; table_schema.fields().len()];
        let targets: Vec<usize> = if insert.columns.is_empty() {
            (0..table_schema.fields().len()).collect()
        } else {
            let mut t = Vec::with_capacity(insert.columns.len());
            for c in &insert.columns {
                let col = object_name(c);
                let i = table_schema
                    .fields()
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(&col))
                    .ok_or_else(|| {
                        EmberError::Plan(format!("table '{name}' has no column '{col}'"))
                    })?;
                if t.contains(&i) {
                    return plan_err!("column '{col}' is listed twice in INSERT INTO {name}");
                }
                t.push(i);
            }
            t
        };
        let produced = plan.schema().len();
        if targets.len() != produced {
            return plan_err!(
                "INSERT INTO {name} has {} target columns but the query produces {produced}",
                targets.len()
            );
        }
        for (q, &t) in targets.iter().enumerate() {
            feeds[t] = Some(q);
        }
        let in_schema = plan.schema().clone();
        let mut exprs = Vec::with_capacity(feeds.len());
        for (field, feed) in table_schema.fields().iter().zip(&feeds) {
            let e = match feed {
                Some(q) => {
                    let f = in_schema.field(*q);
                    let c = Expr::Column(Column::new(f.qualifier.clone(), f.name()));
                    if f.data_type() == field.data_type() {
                        c
                    } else if ember_planner::types::can_cast(f.data_type(), field.data_type()) {
                        c.cast_to(field.data_type().clone())
                    } else {
                        return plan_err!(
                            "INSERT INTO {name}: cannot cast {} to {} for column '{}'",
                            f.data_type(),
                            field.data_type(),
                            field.name()
                        );
                    }
                }
                None => {
                    if !field.is_nullable() {
                        return plan_err!(
                            "INSERT INTO {name}: column '{}' is NOT NULL but gets no value",
                            field.name()
                        );
                    }
                    Expr::Literal(ScalarValue::Null).cast_to(field.data_type().clone())
                }
            };
            exprs.push(e.alias(field.name().clone()));
        }
        let plan = Arc::new(LogicalPlan::Projection(Projection::try_new(plan, exprs)?));
        Ok(PlannedStatement::Insert { table: name, plan })
    }

    fn scan_whole_table(&self, name: &ObjectName, scope: &Scope) -> Result<Arc<LogicalPlan>> {
        let table = object_name(name);
        if let Some(plan) = self.ctx.get_view(&table) {
            return Ok(plan);
        }
        match self.ctx.get_table(&table) {
            Some(source) => Ok(Arc::new(LogicalPlan::TableScan(
                ember_planner::logical::TableScan::try_new(table, source, None, vec![])?,
            ))),
            None => Err(self.table_not_found(&table, scope, object_name_span(name))),
        }
    }
}

/// `SET k = v` / `SET k TO v`: the value as text, quotes stripped.
fn plan_set(set: &Set) -> Result<PlannedStatement> {
    let Set::SingleAssignment {
        variable, values, ..
    } = set
    else {
        return not_impl_err!("SET {set}");
    };
    let key = variable
        .0
        .iter()
        .map(|p| match p.as_ident() {
            Some(id) => id.value.clone(),
            None => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".");
    let value = match values.as_slice() {
        [v] => set_value(v),
        _ => return plan_err!("SET {key} expects exactly one value"),
    };
    Ok(PlannedStatement::Set { key, value })
}

fn set_value(v: &SqlExpr) -> String {
    match v {
        SqlExpr::Value(v) => string_value(&v.value).unwrap_or_else(|| v.value.to_string()),
        SqlExpr::Identifier(id) => id.value.clone(),
        other => other.to_string(),
    }
}
