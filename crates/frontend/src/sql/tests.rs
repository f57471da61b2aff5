//! Plan-shape tests for the SQL planner.
