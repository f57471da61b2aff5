//! Helpers shared by integration tests: the TPC-H queries with their reference answers
//! ([`tpch`]), single jobs run under a fault plan with their event log ([`jobs`]) and a
//! session's event log files read back ([`event_files`]).
//!
//! Each test binary that says `mod common;` compiles its own copy, so not every binary
//! uses every helper.
#![allow(dead_code)]

pub mod event_files;
pub mod jobs;
pub mod tpch;
