//! The whole rule list on realistic plans: a TPC-H Q5-like comma join, and an iterative job
//! a thousand levels deep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::test_util::{drop_deep, scan_with_rows, show};
use super::Optimizer;
use crate::expr::{col, lit, sum};
use crate::logical::{Aggregate, CrossJoin, Filter, Join, JoinType, LogicalPlan, Projection};

/// After `optimize`, no rule may still find something to change: the loop stopped at a
/// real fixed point, not at the pass limit (a rule that flip-flops would fail this).
fn assert_fixed_point(plan: &Arc<LogicalPlan>) {
    let optimizer = Optimizer::default();
    let config = super::OptimizerConfig::default();
    for rule in optimizer.rules() {
        let t = super::apply_rule(rule.as_ref(), Arc::clone(plan), &config).unwrap();
        assert!(
            !t.transformed,
            "rule {} still changes the optimized plan:\n{}\ninto\n{}",
            rule.name(),
            show(plan),
            show(&t.data)
        );
    }
}

fn cross(l: Arc<LogicalPlan>, r: Arc<LogicalPlan>) -> Arc<LogicalPlan> {
    Arc::new(LogicalPlan::CrossJoin(CrossJoin::new(l, r)))
}

#[test]
fn q5_like_comma_join_becomes_hash_joins_with_filters_in_scans() {
    let customer = scan_with_rows(
        "customer",
        &["c_custkey", "c_nationkey", "c_name"],
        Some(1500),
    );
    let orders = scan_with_rows(
        "orders",
        &["o_orderkey", "o_custkey", "o_date"],
        Some(15_000),
    );
    let lineitem = scan_with_rows(
        "lineitem",
        &["l_orderkey", "l_price", "l_qty"],
        Some(60_000),
    );
    let nation = scan_with_rows(
        "nation",
        &["n_nationkey", "n_name", "n_regionkey"],
        Some(25),
    );
    let region = scan_with_rows("region", &["r_regionkey", "r_name"], Some(5));
    let from = cross(
        cross(cross(cross(customer, orders), lineitem), nation),
        region,
    );
    let predicate = col("customer.c_custkey")
        .eq(col("orders.o_custkey"))
        .and(col("lineitem.l_orderkey").eq(col("orders.o_orderkey")))
        .and(col("customer.c_nationkey").eq(col("nation.n_nationkey")))
        .and(col("nation.n_regionkey").eq(col("region.r_regionkey")))
        .and(col("region.r_name").eq(lit("ASIA")))
        .and(col("orders.o_date").gt_eq(lit(100i64).add(lit(1i64))));
    let filter = Arc::new(LogicalPlan::Filter(Filter {
        input: from,
        predicate,
    }));
    let agg = Arc::new(LogicalPlan::Aggregate(
        Aggregate::try_new(
            filter,
            vec![col("nation.n_name")],
            vec![sum(col("lineitem.l_price"))],
        )
        .unwrap(),
    ));
    let plan = Optimizer::default().optimize(agg).unwrap();
    let text = show(&plan);
    assert_fixed_point(&plan);
    assert!(!text.contains("CrossJoin"), "{text}");
    assert_eq!(text.matches("Inner Join").count(), 4, "{text}");
    assert!(
        text.contains("TableScan: region filters=[(region.r_name = 'ASIA')]"),
        "{text}"
    );
    assert!(
        text.contains("TableScan: orders filters=[(orders.o_date >= 101)]"),
        "{text}"
    );
    assert!(
        text.contains("TableScan: lineitem projection=[l_orderkey, l_price]"),
        "{text}"
    );
    assert!(
        text.contains("TableScan: customer projection=[c_custkey, c_nationkey]"),
        "{text}"
    );
    // Every join's build (right) side is its smaller input.
    let mut stats = super::stats::StatsCache::default();
    let mut stack = vec![Arc::clone(&plan)];
    while let Some(p) = stack.pop() {
        if let LogicalPlan::Join(j) = p.as_ref() {
            let (l, r) = (stats.estimate(&j.left), stats.estimate(&j.right));
            assert!(
                r.bytes <= l.bytes,
                "build side larger than probe side in:\n{text}"
            );
        }
        stack.extend(p.inputs().into_iter().cloned());
    }
}

/// TPC-H Q20's decorrelated subquery: a column-only projection over a filter that needs both
/// sides of a left join. Narrowing used to put a projection between the filter and the join,
/// which `push_down_filter` swapped back above it, pass after pass until the pass limit —
/// and the scan kept every column (ps_comment included).
#[test]
fn filter_over_join_under_projections_narrows_the_scan_and_reaches_a_fixed_point() {
    let partsupp = scan_with_rows(
        "partsupp",
        &["ps_partkey", "ps_suppkey", "ps_availqty", "ps_comment"],
        Some(8000),
    );
    let sums = scan_with_rows("sums", &["s_partkey", "s_value"], Some(2000));
    let join = Arc::new(LogicalPlan::Join(
        Join::try_new(
            partsupp,
            sums,
            vec![(col("partsupp.ps_partkey"), col("sums.s_partkey"))],
            None,
            JoinType::Left,
            false,
        )
        .unwrap(),
    ));
    let all_columns = |input: Arc<LogicalPlan>| {
        let exprs = ["ps_partkey", "ps_suppkey", "ps_availqty", "ps_comment"]
            .iter()
            .map(|c| col(&format!("partsupp.{c}")))
            .chain([col("sums.s_value")])
            .collect();
        Arc::new(LogicalPlan::Projection(
            Projection::try_new(input, exprs).unwrap(),
        ))
    };
    let filter = Arc::new(LogicalPlan::Filter(Filter {
        input: all_columns(join),
        predicate: col("partsupp.ps_availqty").gt(col("sums.s_value")),
    }));
    let plan = Arc::new(LogicalPlan::Projection(
        Projection::try_new(all_columns(filter), vec![col("partsupp.ps_suppkey")]).unwrap(),
    ));
    let plan = Optimizer::default().optimize(plan).unwrap();
    let text = show(&plan);
    assert_fixed_point(&plan);
    assert!(
        text.contains("TableScan: partsupp projection=[ps_partkey, ps_suppkey, ps_availqty]"),
        "{text}"
    );
}

/// One iteration of a PageRank-like loop: join the shared `links` with the previous ranks,
/// aggregate, and project.
fn iteration(links: &Arc<LogicalPlan>, ranks: Arc<LogicalPlan>, i: usize) -> Arc<LogicalPlan> {
    let alias = format!("r{i}");
    let ranks = Arc::new(LogicalPlan::SubqueryAlias(
        crate::logical::SubqueryAlias::new(ranks, &alias),
    ));
    let join = Arc::new(LogicalPlan::Join(
        Join::try_new(
            Arc::clone(links),
            ranks,
            vec![(col("links.src"), col(&format!("{alias}.page")))],
            None,
            JoinType::Inner,
            false,
        )
        .unwrap(),
    ));
    let filtered = Arc::new(LogicalPlan::Filter(Filter {
        input: join,
        predicate: col(&format!("{alias}.rank")).gt(lit(0i64)).and(lit(true)),
    }));
    let agg = Arc::new(LogicalPlan::Aggregate(
        Aggregate::try_new(
            filtered,
            vec![col("links.dst")],
            vec![sum(col(&format!("{alias}.rank")))],
        )
        .unwrap(),
    ));
    let sum_name = format!("sum({alias}.rank)");
    Arc::new(LogicalPlan::Projection(
        Projection::try_new(
            agg,
            vec![
                col("links.dst").alias("page"),
                crate::expr::Expr::Column(crate::schema::Column::unqualified(sum_name))
                    .alias("rank"),
            ],
        )
        .unwrap(),
    ))
}

fn iterative_plan(levels: usize) -> Arc<LogicalPlan> {
    let links = scan_with_rows("links", &["src", "dst", "weight"], Some(1000));
    let pages = scan_with_rows("pages", &["page", "rank"], Some(100));
    let mut ranks = pages;
    for i in 0..levels {
        ranks = iteration(&links, ranks, i);
    }
    ranks
}

fn time_optimize(levels: usize) -> Duration {
    let plan = iterative_plan(levels);
    let start = Instant::now();
    let out = Optimizer::default().optimize(Arc::clone(&plan)).unwrap();
    let elapsed = start.elapsed();
    drop_deep(out);
    drop_deep(plan);
    elapsed
}

#[test]
fn iterative_1000_level_plan_optimizes_in_linear_time_without_overflow() {
    // Run on a thread with the default test stack size (2 MiB) on purpose.
    let small = time_optimize(100);
    let large = time_optimize(1000);
    // 10x the levels: allow generous slack over 10x for noise, far below quadratic (100x).
    assert!(
        large < small * 40 + Duration::from_millis(200),
        "100 levels: {small:?}, 1000 levels: {large:?}"
    );
}

#[test]
fn iterative_plan_is_actually_optimized() {
    let plan = Optimizer::default().optimize(iterative_plan(3)).unwrap();
    assert_fixed_point(&plan);
    let text = show(&plan);
    assert!(!text.contains("AND true"), "{text}");
    assert!(text.contains("filters=[(pages.rank > 0)]"), "{text}");
    assert!(
        text.contains("TableScan: links projection=[src, dst]"),
        "{text}"
    );
}
