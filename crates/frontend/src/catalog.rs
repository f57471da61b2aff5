//! The session's names: tables (data sources) and views (stored logical plans).
//!
//! Lookups are case-insensitive, as SQL identifiers are, but each entry keeps the spelling it
//! was registered with so `SHOW TABLES` prints what the user wrote. Tables and views share
//! one namespace: `FROM x` must never be ambiguous.

use std::collections::BTreeMap;
use std::sync::Arc;

use ember_planner::logical::LogicalPlan;
use ember_planner::table::TableSource;
use ember_planner::{EmberError, Result};

/// What a name refers to.
#[derive(Debug, Clone)]
pub enum CatalogEntry {
    Table(Arc<dyn TableSource>),
    View(Arc<LogicalPlan>),
}

impl CatalogEntry {
    pub fn kind(&self) -> &'static str {
        match self {
            CatalogEntry::Table(_) => "table",
            CatalogEntry::View(_) => "view",
        }
    }
}

#[derive(Debug, Default)]
pub struct Catalog {
    /// Lower-cased name → (name as registered, entry).
    entries: BTreeMap<String, (String, CatalogEntry)>,
    /// Lower-cased name → the persisted plan (`CACHE TABLE`, `CHECKPOINT TABLE`) queries
    /// read instead of the entry, until `UNCACHE TABLE`.
    persisted: BTreeMap<String, Arc<LogicalPlan>>,
}

impl Catalog {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(name: &str) -> String {
        name.to_ascii_lowercase()
    }

    /// Registers a table. With `replace`, an existing *table* of that name is replaced;
    /// a view of that name is never silently replaced by a table.
    pub fn register_table(
        &mut self,
        name: &str,
        source: Arc<dyn TableSource>,
        replace: bool,
    ) -> Result<()> {
        self.insert(name, CatalogEntry::Table(source), replace)
    }

    /// Registers a view. With `replace`, an existing view of that name is replaced.
    pub fn register_view(
        &mut self,
        name: &str,
        plan: Arc<LogicalPlan>,
        replace: bool,
    ) -> Result<()> {
        self.insert(name, CatalogEntry::View(plan), replace)
    }

    fn insert(&mut self, name: &str, entry: CatalogEntry, replace: bool) -> Result<()> {
        if name.trim().is_empty() {
            return Err(EmberError::Plan(
                "a table or view name must not be empty".into(),
            ));
        }
        let key = Self::key(name);
        if let Some((existing_name, existing)) = self.entries.get(&key) {
            let same_kind = existing.kind() == entry.kind();
            if !(replace && same_kind) {
                return Err(EmberError::Plan(format!(
                    "{} '{existing_name}' already exists",
                    existing.kind()
                )));
            }
        }
        self.entries.insert(key, (name.to_string(), entry));
        Ok(())
    }

    /// Makes queries of `name` read `plan` (a `Persist` over the entry's plan). Returns the
    /// plan it replaces, if the name was persisted already.
    pub fn set_persisted(
        &mut self,
        name: &str,
        plan: Arc<LogicalPlan>,
    ) -> Option<Arc<LogicalPlan>> {
        self.persisted.insert(Self::key(name), plan)
    }

    /// Stops reading `name` from its persisted plan; returns that plan.
    pub fn remove_persisted(&mut self, name: &str) -> Option<Arc<LogicalPlan>> {
        self.persisted.remove(&Self::key(name))
    }

    /// Every persisted plan (to keep their checkpoints in `VACUUM CHECKPOINTS`).
    pub fn persisted_plans(&self) -> Vec<Arc<LogicalPlan>> {
        self.persisted.values().cloned().collect()
    }

    /// The plan queries of `name` read: its persisted plan, else the view's plan. `None`
    /// for an unpersisted table (read through its source).
    pub fn plan_of(&self, name: &str) -> Option<Arc<LogicalPlan>> {
        self.persisted
            .get(&Self::key(name))
            .cloned()
            .or_else(|| self.view(name))
    }

    pub fn table(&self, name: &str) -> Option<Arc<dyn TableSource>> {
        if self.persisted.contains_key(&Self::key(name)) {
            return None;
        }
        match self.entries.get(&Self::key(name)) {
            Some((_, CatalogEntry::Table(t))) => Some(t.clone()),
            _ => None,
        }
    }

    pub fn view(&self, name: &str) -> Option<Arc<LogicalPlan>> {
        match self.entries.get(&Self::key(name)) {
            Some((_, CatalogEntry::View(v))) => Some(v.clone()),
            _ => None,
        }
    }

    pub fn get(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries.get(&Self::key(name)).map(|(_, e)| e)
    }

    /// Removes a table. `Ok(false)` when there is none (the caller decides whether that is
    /// an error: `DROP TABLE IF EXISTS`). Naming a view is always an error.
    pub fn drop_table(&mut self, name: &str) -> Result<bool> {
        self.remove(name, "table")
    }

    /// Removes a view, like [`Catalog::drop_table`].
    pub fn drop_view(&mut self, name: &str) -> Result<bool> {
        self.remove(name, "view")
    }

    fn remove(&mut self, name: &str, kind: &str) -> Result<bool> {
        let key = Self::key(name);
        match self.entries.get(&key) {
            None => Ok(false),
            Some((registered, entry)) if entry.kind() != kind => Err(EmberError::Plan(format!(
                "'{registered}' is a {}, not a {kind}: use DROP {}",
                entry.kind(),
                entry.kind().to_ascii_uppercase()
            ))),
            Some(_) => {
                self.entries.remove(&key);
                self.persisted.remove(&key);
                Ok(true)
            }
        }
    }

    /// `(name as registered, "table" | "view")`, sorted by name.
    pub fn list(&self) -> Vec<(String, &'static str)> {
        self.entries
            .values()
            .map(|(name, e)| (name.clone(), e.kind()))
            .collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.entries
            .values()
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;

    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use ember_planner::logical::EmptyRelation;
    use ember_planner::schema::PlanSchema;
    use ember_planner::table::{ScanPartition, ScanRequest};

    use super::*;

    #[derive(Debug)]
    struct Dummy;

    impl TableSource for Dummy {
        fn schema(&self) -> SchemaRef {
            Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, true)]))
        }
        fn scan(&self, _: &ScanRequest) -> Result<Vec<Arc<dyn ScanPartition>>> {
            Ok(vec![])
        }
        fn identity(&self) -> String {
            "dummy".into()
        }
        fn kind(&self) -> &str {
            "dummy"
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    fn view() -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::EmptyRelation(EmptyRelation {
            produce_one_row: true,
            schema: Arc::new(PlanSchema::empty()),
        }))
    }

    #[test]
    fn lookups_ignore_case_and_keep_spelling() {
        let mut c = Catalog::new();
        c.register_table("LineItem", Arc::new(Dummy), false)
            .unwrap();
        assert!(c.table("lineitem").is_some());
        assert!(c.table("LINEITEM").is_some());
        assert!(c.view("lineitem").is_none());
        assert_eq!(c.list(), vec![("LineItem".to_string(), "table")]);
    }

    #[test]
    fn tables_and_views_share_one_namespace() {
        let mut c = Catalog::new();
        c.register_view("v", view(), false).unwrap();
        let err = c.register_table("V", Arc::new(Dummy), true).unwrap_err();
        assert!(err.to_string().contains("view 'v' already exists"), "{err}");
        c.register_view("v", view(), true).unwrap();
        assert!(c.register_view("v", view(), false).is_err());
    }

    #[test]
    fn drop_distinguishes_missing_and_wrong_kind() {
        let mut c = Catalog::new();
        c.register_table("t", Arc::new(Dummy), false).unwrap();
        assert!(!c.drop_view("nope").unwrap());
        assert!(c
            .drop_view("t")
            .unwrap_err()
            .to_string()
            .contains("use DROP TABLE"));
        assert!(c.drop_table("T").unwrap());
        assert!(c.table("t").is_none());
    }
}
