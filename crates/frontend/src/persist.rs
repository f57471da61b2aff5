//! Persisting from the user's side: `DataFrame::cache/persist/checkpoint/local_checkpoint/
//! unpersist`, SQL `CACHE TABLE`, `UNCACHE TABLE`, `CHECKPOINT TABLE`, `VACUUM CHECKPOINTS`,
//! and `ember.checkpoint.cleanup` at session end.
//!
//! Persisting wraps a plan in a `Persist` node with a fresh id (see
//! `ember_planner::persist`); the scheduler keeps its partitions when a query first computes
//! them. `cache()` and `checkpoint()` on a DataFrame are lazy (Spark's `cache()` is too; its
//! `checkpoint()` runs a separate job that computes the data a second time — Ember writes the
//! checkpoint while the first query computes it). The SQL statements are eager, as Spark's
//! `CACHE TABLE` is: they run a count over the persisted plan so the data is kept at once.

use std::collections::HashSet;
use std::sync::Arc;

use ember_exec::executor::LocalCluster;
use ember_planner::logical::{LogicalPlan, Persist};
use ember_planner::persist::PersistMode;
use ember_planner::{EmberError, Result};
use ember_storage::checkpoint::{CheckpointStore, DEFAULT_CHECKPOINT_DIR};

use crate::config::CHECKPOINT_DIR;
use crate::dataframe::DataFrame;
use crate::session::Session;

impl Session {
    /// `plan` wrapped in a new `Persist` node, or `plan` itself if it already persists the
    /// same way (persisting twice keeps one copy).
    pub(crate) fn persisted_plan(
        &self,
        plan: &Arc<LogicalPlan>,
        mode: PersistMode,
    ) -> Arc<LogicalPlan> {
        if let LogicalPlan::Persist(p) = plan.as_ref() {
            if p.mode == mode {
                return plan.clone();
            }
        }
        Arc::new(LogicalPlan::Persist(Persist {
            input: plan.clone(),
            id: self.next_persist_id(),
            mode,
        }))
    }

    /// Drops what `plan` keeps (its blocks; a reliable checkpoint's files stay until vacuum
    /// or session end) and returns the plan it persisted. Plans that persist nothing are
    /// returned unchanged.
    pub(crate) fn unpersisted_plan(&self, plan: &Arc<LogicalPlan>) -> Arc<LogicalPlan> {
        match plan.as_ref() {
            LogicalPlan::Persist(p) => {
                if let Some(cluster) = self.runtime().current_cluster() {
                    cluster.unpersist(p.id);
                }
                p.input.clone()
            }
            _ => plan.clone(),
        }
    }

    /// `CACHE TABLE name [AS plan]` / `CHECKPOINT TABLE name`: queries of `name` read the
    /// persisted plan from now on; it is computed (and kept) at once. Returns its row count.
    pub(crate) fn persist_table(
        &self,
        name: &str,
        plan: Option<Arc<LogicalPlan>>,
        mode: PersistMode,
    ) -> Result<usize> {
        let source = match plan {
            Some(plan) => {
                self.catalog()
                    .write()
                    .register_view(name, plan.clone(), true)?;
                plan
            }
            None => {
                // The table as it is read today, without an earlier persisted copy.
                let previous = self.catalog().write().remove_persisted(name);
                if let Some(previous) = previous {
                    self.unpersisted_plan(&previous);
                }
                self.table(name)?.plan().clone()
            }
        };
        let persisted = self.persisted_plan(&source, mode);
        // (Each catalog guard is dropped before anything else runs: no lock is held across
        // a query.)
        let previous = self
            .catalog()
            .write()
            .set_persisted(name, persisted.clone());
        if let Some(previous) = previous {
            self.unpersisted_plan(&previous);
        }
        match DataFrame::new(self.clone(), persisted).count() {
            Ok(rows) => Ok(rows),
            Err(e) => {
                // Nothing is half-persisted: the name reads its source again.
                let persisted = self.catalog().write().remove_persisted(name);
                if let Some(p) = persisted {
                    self.unpersisted_plan(&p);
                }
                Err(e)
            }
        }
    }

    /// `UNCACHE TABLE name`.
    pub(crate) fn unpersist_table(&self, name: &str) -> Result<()> {
        let persisted = self.catalog().write().remove_persisted(name);
        match persisted {
            Some(plan) => {
                self.unpersisted_plan(&plan);
                Ok(())
            }
            None if self
                .table_names()
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name)) =>
            {
                Err(EmberError::Plan(format!(
                    "table '{name}' is not cached: nothing to uncache"
                )))
            }
            None => Err(EmberError::Plan(format!("unknown table '{name}'"))),
        }
    }

    /// `ember.checkpoint.dir`.
    pub(crate) fn checkpoint_dir(&self) -> String {
        self.config()
            .get(CHECKPOINT_DIR)
            .unwrap_or(DEFAULT_CHECKPOINT_DIR)
            .to_string()
    }

    /// `VACUUM CHECKPOINTS`: removes every checkpoint under `ember.checkpoint.dir` that this
    /// session's persisted plans do not use (leftovers of finished or crashed
    /// applications, rejected attempts). Returns how many were removed.
    pub(crate) fn vacuum_checkpoints(&self) -> Result<usize> {
        let dir = self.checkpoint_dir();
        let store = CheckpointStore::open(&dir)
            .map_err(|e| e.context(format!("VACUUM CHECKPOINTS: cannot open '{dir}'")))?;
        let keep: HashSet<_> = self
            .runtime()
            .current_cluster()
            .map(|c| c.persisted().committed_fingerprints())
            .unwrap_or_default()
            .into_iter()
            .collect();
        Ok(store.vacuum(&keep)?.len())
    }
}

/// Removes the reliable checkpoints `cluster`'s session committed (best effort: this runs
/// while the session is dropped, where an error has nobody to go to).
pub(crate) fn remove_session_checkpoints(cluster: &LocalCluster, dir: &str) {
    let fingerprints = cluster.persisted().committed_fingerprints();
    if fingerprints.is_empty() {
        return;
    }
    if let Ok(store) = CheckpointStore::open(dir) {
        for fingerprint in fingerprints {
            let _ = store.remove(fingerprint);
        }
    }
}
