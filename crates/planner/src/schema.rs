//! Schemas of logical plans: Arrow fields plus the table qualifier each came from, so that
//! `o.o_orderkey` and `l.l_orderkey` resolve after a join.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{closest_name, EmberError, Result};

/// A reference to a column, optionally qualified by a table name or alias.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Column {
    pub relation: Option<String>,
    pub name: String,
}

impl Column {
    pub fn new(relation: Option<impl Into<String>>, name: impl Into<String>) -> Self {
        Column {
            relation: relation.map(Into::into),
            name: name.into(),
        }
    }

    pub fn unqualified(name: impl Into<String>) -> Self {
        Column {
            relation: None,
            name: name.into(),
        }
    }

    /// Parses `a.b` into a qualified column, `b` into an unqualified one.
    pub fn from_qualified_name(s: &str) -> Self {
        match s.rsplit_once('.') {
            Some((r, n)) => Column::new(Some(r), n),
            None => Column::unqualified(s),
        }
    }

    pub fn flat_name(&self) -> String {
        match &self.relation {
            Some(r) => format!("{r}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.flat_name())
    }
}

/// One field of a plan schema and the relation (table/alias) it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QualifiedField {
    pub qualifier: Option<String>,
    pub field: FieldRef,
}

impl QualifiedField {
    pub fn new(qualifier: Option<String>, field: impl Into<FieldRef>) -> Self {
        QualifiedField {
            qualifier,
            field: field.into(),
        }
    }

    pub fn name(&self) -> &str {
        self.field.name()
    }

    pub fn data_type(&self) -> &DataType {
        self.field.data_type()
    }

    pub fn column(&self) -> Column {
        Column {
            relation: self.qualifier.clone(),
            name: self.field.name().clone(),
        }
    }
}

/// The schema of a logical plan node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PlanSchema {
    fields: Vec<QualifiedField>,
}

pub type PlanSchemaRef = Arc<PlanSchema>;

impl PlanSchema {
    pub fn new(fields: Vec<QualifiedField>) -> Self {
        PlanSchema { fields }
    }

    pub fn empty() -> Self {
        PlanSchema::default()
    }

    /// All fields of `schema`, qualified by `qualifier`.
    pub fn from_arrow(qualifier: Option<&str>, schema: &Schema) -> Self {
        PlanSchema {
            fields: schema
                .fields()
                .iter()
                .map(|f| QualifiedField::new(qualifier.map(str::to_string), f.clone()))
                .collect(),
        }
    }

    pub fn fields(&self) -> &[QualifiedField] {
        &self.fields
    }

    pub fn field(&self, i: usize) -> &QualifiedField {
        &self.fields[i]
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The same fields, all re-qualified by `alias` (for `FROM t AS alias`).
    pub fn with_qualifier(&self, alias: &str) -> Self {
        PlanSchema {
            fields: self
                .fields
                .iter()
                .map(|f| QualifiedField::new(Some(alias.to_string()), f.field.clone()))
                .collect(),
        }
    }

    /// Left fields followed by right fields (the schema of a join).
    pub fn join(&self, right: &PlanSchema) -> Self {
        let mut fields = self.fields.clone();
        fields.extend(right.fields.iter().cloned());
        PlanSchema { fields }
    }

    /// The same fields with nullability forced on (for the outer side of an outer join).
    pub fn nullable(&self) -> Self {
        PlanSchema {
            fields: self
                .fields
                .iter()
                .map(|f| {
                    QualifiedField::new(
                        f.qualifier.clone(),
                        f.field.as_ref().clone().with_nullable(true),
                    )
                })
                .collect(),
        }
    }

    /// Finds `column`'s index. An unqualified name must be unambiguous.
    pub fn index_of_column(&self, column: &Column) -> Result<usize> {
        self.maybe_index_of_column(column)?.ok_or_else(|| {
            let names: Vec<String> = self.fields.iter().map(|f| f.column().flat_name()).collect();
            let hint = closest_name(&column.flat_name(), names.iter().map(String::as_str))
                .or_else(|| closest_name(&column.name, self.fields.iter().map(|f| f.name())))
                .map(|n| format!(" Did you mean '{n}'?"))
                .unwrap_or_default();
            EmberError::Plan(format!("column '{column}' not found.{hint}"))
        })
    }

    /// Like `index_of_column`, but `Ok(None)` when the column is absent (for scoped lookups
    /// in correlated subqueries). Still an error when the name is ambiguous.
    pub fn maybe_index_of_column(&self, column: &Column) -> Result<Option<usize>> {
        let name_matches = |f: &QualifiedField| {
            f.name() == column.name || f.name().eq_ignore_ascii_case(&column.name)
        };
        let exact = |f: &QualifiedField| f.name() == column.name;
        let candidates: Vec<usize> = match &column.relation {
            Some(r) => self
                .fields
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    f.qualifier
                        .as_deref()
                        .is_some_and(|q| q.eq_ignore_ascii_case(r))
                        && name_matches(f)
                })
                .map(|(i, _)| i)
                .collect(),
            None => self
                .fields
                .iter()
                .enumerate()
                .filter(|(_, f)| name_matches(f))
                .map(|(i, _)| i)
                .collect(),
        };
        match candidates.len() {
            0 => Ok(None),
            1 => Ok(Some(candidates[0])),
            _ => {
                // Prefer an exact-case match; otherwise it is truly ambiguous.
                let exacts: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|i| exact(&self.fields[*i]))
                    .collect();
                if exacts.len() == 1 {
                    Ok(Some(exacts[0]))
                } else {
                    Err(EmberError::Plan(format!(
                        "column reference '{column}' is ambiguous: it matches {}",
                        candidates
                            .iter()
                            .map(|i| self.fields[*i].column().flat_name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            }
        }
    }

    pub fn has_column(&self, column: &Column) -> bool {
        matches!(self.maybe_index_of_column(column), Ok(Some(_)))
    }

    /// Every column as an expression, in order: the select list that keeps a plan as it is.
    pub fn column_exprs(&self) -> Vec<crate::expr::Expr> {
        self.fields
            .iter()
            .map(|f| crate::expr::Expr::Column(f.column()))
            .collect()
    }

    pub fn columns(&self) -> Vec<Column> {
        self.fields.iter().map(QualifiedField::column).collect()
    }

    /// The plain Arrow schema (qualifiers dropped), as batches carry it.
    pub fn to_arrow(&self) -> Schema {
        Schema::new(
            self.fields
                .iter()
                .map(|f| f.field.clone())
                .collect::<Vec<FieldRef>>(),
        )
    }

    pub fn to_arrow_ref(&self) -> SchemaRef {
        Arc::new(self.to_arrow())
    }

    pub fn field_with_name(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name() == name)
            .map(|f| f.field.as_ref())
    }
}

impl fmt::Display for PlanSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .fields
            .iter()
            .map(|qf| format!("{}:{}", qf.column(), qf.data_type()))
            .collect();
        write!(f, "[{}]", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> PlanSchema {
        let a = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]);
        let b = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
        PlanSchema::from_arrow(Some("a"), &a).join(&PlanSchema::from_arrow(Some("b"), &b))
    }

    #[test]
    fn resolves_qualified_and_unqualified_columns() {
        let s = schema();
        assert_eq!(
            s.index_of_column(&Column::from_qualified_name("b.id"))
                .unwrap(),
            2
        );
        assert_eq!(s.index_of_column(&Column::unqualified("name")).unwrap(), 1);
        let err = s.index_of_column(&Column::unqualified("id")).unwrap_err();
        assert!(err.to_string().contains("ambiguous"), "{err}");
    }

    #[test]
    fn unknown_column_suggests_closest_name() {
        let err = schema()
            .index_of_column(&Column::unqualified("nme"))
            .unwrap_err();
        assert!(err.to_string().contains("Did you mean 'a.name'"), "{err}");
    }
}
