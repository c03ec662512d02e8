//! The Cypher subset: lexer, syntax tree, parser and the semantic checks Memgraph runs at RUN time.

pub mod ast;
pub mod lexer;
pub mod parser;

pub use ast::{Statement, SyncMode};
pub use parser::parse;

use std::collections::BTreeSet;

use ast::{Clause, CypherQuery, Expr};

/// A parse failure, rendered the way Memgraph renders ANTLR errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// 0-based column (printed + 1, as Memgraph does).
    pub col: usize,
    /// The ANTLR-style message, e.g. `mismatched input '-' expecting {ASYNC, SYNC}`.
    pub msg: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.msg.starts_with("Integer literal") {
            return f.write_str(&self.msg);
        }
        write!(f, "Error on line {} position {}. The underlying parsing error is {}", self.line, self.col + 1, self.msg)
    }
}

impl std::error::Error for SyntaxError {}

/// Semantic checks of a regular query: variables bound before use, no redeclaration, and a query
/// that neither returns nor updates is rejected. Returns Memgraph's message on failure.
pub fn check_semantics(q: &CypherQuery) -> Result<(), String> {
    let mut bound: BTreeSet<String> = BTreeSet::new();
    let unbound = |bound: &BTreeSet<String>, e: &Expr| {
        let mut missing = None;
        e.for_each_var(&mut |v| {
            if missing.is_none() && !bound.contains(v) {
                missing = Some(v.to_string());
            }
        });
        missing.map_or(Ok(()), |v| Err(format!("Unbound variable: {v}.")))
    };
    for clause in &q.clauses {
        match clause {
            Clause::Match { patterns, filter } => {
                for p in patterns {
                    for (_, e) in &p.props {
                        unbound(&bound, e)?;
                    }
                    if let Some(v) = &p.var {
                        bound.insert(v.clone());
                    }
                }
                if let Some(f) = filter {
                    unbound(&bound, f)?;
                    if f.has_aggregate() {
                        return Err("Aggregation functions are only allowed in WITH and RETURN.".into());
                    }
                }
            }
            Clause::Create(patterns) => {
                for p in patterns {
                    for (_, e) in &p.props {
                        unbound(&bound, e)?;
                    }
                    if let Some(v) = &p.var {
                        if bound.contains(v) {
                            return Err(format!("Redeclaring variable: {v}."));
                        }
                        bound.insert(v.clone());
                    }
                }
            }
            Clause::Delete { exprs, .. } => {
                for e in exprs {
                    unbound(&bound, e)?;
                }
            }
            Clause::Return(r) => {
                for i in &r.items {
                    unbound(&bound, &i.expr)?;
                }
                // ORDER BY may use aliases too.
                let mut with_aliases = bound.clone();
                with_aliases.extend(r.items.iter().map(|i| i.name.clone()));
                for (e, _) in &r.order_by {
                    unbound(&with_aliases, e)?;
                }
                for e in r.skip.iter().chain(&r.limit) {
                    unbound(&BTreeSet::new(), e)?;
                }
            }
        }
    }
    let ends_ok = matches!(q.clauses.last(), Some(Clause::Return(_) | Clause::Create(_) | Clause::Delete { .. }));
    if !ends_ok {
        return Err("Query should either create or update something, or return results!".into());
    }
    Ok(())
}

/// Every `$param` the statement uses.
pub fn params_used(q: &CypherQuery) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |e: &Expr| {
        e.for_each_param(&mut |p| {
            out.insert(p.to_string());
        })
    };
    for c in &q.clauses {
        match c {
            Clause::Match { patterns, filter } => {
                patterns.iter().flat_map(|p| &p.props).for_each(|(_, e)| add(e));
                filter.iter().for_each(&mut add);
            }
            Clause::Create(patterns) => patterns.iter().flat_map(|p| &p.props).for_each(|(_, e)| add(e)),
            Clause::Delete { exprs, .. } => exprs.iter().for_each(&mut add),
            Clause::Return(r) => {
                r.items.iter().for_each(|i| add(&i.expr));
                r.order_by.iter().for_each(|(e, _)| add(e));
                r.skip.iter().chain(&r.limit).for_each(&mut add);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ast::*;
    use super::*;
    use crate::value::Value;
    use crate::version::MgVersion;

    fn v(s: &str) -> MgVersion {
        MgVersion::parse(s).unwrap()
    }

    fn p(q: &str) -> Result<Statement, String> {
        parse(q, v("3.12")).map_err(|e| e.to_string())
    }

    #[test]
    fn replication_queries() {
        assert_eq!(
            p("set replication role to replica with port 10000").unwrap(),
            Statement::Replication(ReplicationQuery::SetRoleReplica { port: Some(Value::Int(10000)) })
        );
        assert_eq!(
            p("SET REPLICATION ROLE TO REPLICA").unwrap(),
            Statement::Replication(ReplicationQuery::SetRoleReplica { port: None })
        );
        assert_eq!(
            p("SET REPLICATION ROLE TO MAIN WITH PORT 1").unwrap(),
            Statement::Replication(ReplicationQuery::SetRoleMain)
        );
        assert_eq!(
            p("REGISTER REPLICA read_0 ASYNC TO \"c-read-0-0.c-read-0.ns.svc.cluster.local:10000\";").unwrap(),
            Statement::Replication(ReplicationQuery::Register {
                name: "read_0".into(),
                mode: SyncMode::Async,
                address: Value::from("c-read-0-0.c-read-0.ns.svc.cluster.local:10000"),
            })
        );
        assert_eq!(
            p("REGISTER REPLICA `memgraph-ha-0` STRICT_SYNC TO '10.0.0.1'").unwrap(),
            Statement::Replication(ReplicationQuery::Register {
                name: "memgraph-ha-0".into(),
                mode: SyncMode::StrictSync,
                address: Value::from("10.0.0.1"),
            })
        );
        assert_eq!(
            p("DROP REPLICA read_1").unwrap(),
            Statement::Replication(ReplicationQuery::Drop { name: "read_1".into() })
        );
        assert_eq!(p("SHOW REPLICAS").unwrap(), Statement::Replication(ReplicationQuery::ShowReplicas));
        assert_eq!(p("show replication role").unwrap(), Statement::Replication(ReplicationQuery::ShowRole));
    }

    #[test]
    fn hyphenated_names_give_memgraphs_syntax_error() {
        let q = "REGISTER REPLICA memgraph-ha-0 ASYNC TO \"127.0.0.1\"";
        assert_eq!(
            parse(q, v("3.4")).unwrap_err().to_string(),
            "Error on line 1 position 26. The underlying parsing error is mismatched input '-' expecting {ASYNC, SYNC}"
        );
        assert_eq!(
            parse(q, v("3.12")).unwrap_err().to_string(),
            "Error on line 1 position 26. The underlying parsing error is mismatched input '-' expecting {ASYNC, STRICT_SYNC, SYNC}"
        );
    }

    #[test]
    fn version_dependent_grammar() {
        assert!(parse("REGISTER REPLICA r STRICT_SYNC TO 'h'", v("3.4")).is_err());
        assert!(parse("SHOW SNAPSHOTS", v("2.21")).is_err());
        assert!(parse("SHOW SNAPSHOTS", v("2.22")).is_ok());
        assert!(parse("SHOW NEXT SNAPSHOT", v("3.4")).is_err());
        assert!(parse("SHOW NEXT SNAPSHOT", v("3.5")).is_ok());
        assert!(parse("RECOVER SNAPSHOT '/x' FORCE", v("2.21")).is_err());
        assert!(parse("RECOVER SNAPSHOT 's3://b/x' WITH CONFIG {aws_region: 'eu'} FORCE", v("3.7")).is_err());
        assert!(parse("RECOVER SNAPSHOT 's3://b/x' WITH CONFIG {aws_region: 'eu'} FORCE", v("3.8")).is_ok());
        assert_eq!(
            parse("RECOVER SNAPSHOT '/x' FORCE", v("2.22")).unwrap(),
            Statement::Snapshot(SnapshotQuery::Recover { path: Value::from("/x"), force: true })
        );
    }

    #[test]
    fn port_and_address_must_be_literals() {
        assert!(p("SET REPLICATION ROLE TO REPLICA WITH PORT $p").is_err());
        assert!(p("REGISTER REPLICA r SYNC TO $addr").is_err());
        // A string port parses; it is rejected when executed ("Port number invalid!").
        assert!(p("SET REPLICATION ROLE TO REPLICA WITH PORT '10000'").is_ok());
    }

    #[test]
    fn cypher_subset() {
        let Statement::Cypher(q) = p("CREATE (n:Label {k: $v, s: 'x'}) RETURN n").unwrap() else {
            panic!("not cypher")
        };
        assert!(q.is_write());
        assert_eq!(q.fields(), vec!["n".to_string()]);
        assert_eq!(params_used(&q).into_iter().collect::<Vec<_>>(), vec!["v".to_string()]);
        let Statement::Cypher(q) = p("MATCH (n:L {k: 1}) RETURN n.k, count(n) AS c").unwrap() else {
            panic!("not cypher")
        };
        assert!(!q.is_write());
        assert_eq!(q.fields(), vec!["n.k".to_string(), "c".to_string()]);
        assert!(matches!(p("MATCH (n:_OperatorTest) DETACH DELETE n").unwrap(), Statement::Cypher(_)));
        assert_eq!(
            p("RETURN 1 AS ping").unwrap(),
            Statement::Cypher(CypherQuery {
                clauses: vec![Clause::Return(Return {
                    distinct: false,
                    items: vec![ReturnItem { expr: Expr::Literal(Value::Int(1)), name: "ping".into() }],
                    order_by: vec![],
                    skip: None,
                    limit: None
                })]
            })
        );
        assert_eq!(p("BEGIN").unwrap(), Statement::Begin);
        assert!(matches!(p("RETURN timestamp() AS t").unwrap(), Statement::Cypher(_)));
    }

    #[test]
    fn other_queries_are_syntax_errors() {
        let e = p("MERGE (n) RETURN n").unwrap_err();
        assert!(e.starts_with("Error on line 1 position 1."), "{e}");
        assert!(p("RETURN 1 RETURN 2").unwrap_err().contains("mismatched input 'RETURN'"));
        assert!(p("MATCH (a)-[:R]->(b) RETURN a").is_err());
        assert!(p("").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for q in [
            format!("RETURN {}1{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("RETURN {}1", "-".repeat(100_000)),
            format!("RETURN {}true", "NOT ".repeat(100_000)),
            format!("SET REPLICATION ROLE TO REPLICA WITH PORT {}", "[".repeat(100_000)),
        ] {
            let e = p(&q).unwrap_err();
            assert!(e.contains("maximum nesting depth exceeded"), "{e}");
        }
        assert!(p(&format!("RETURN {}1{} AS x", "(".repeat(30), ")".repeat(30))).is_ok());
    }

    #[test]
    fn semantic_errors() {
        let check = |q: &str| match p(q).unwrap() {
            Statement::Cypher(c) => check_semantics(&c),
            _ => Ok(()),
        };
        assert_eq!(check("MATCH (n) RETURN m"), Err("Unbound variable: m.".into()));
        assert_eq!(check("MATCH (n) CREATE (n)"), Err("Redeclaring variable: n.".into()));
        assert!(check("MATCH (n)").is_err());
        assert!(check("MATCH (n) RETURN n.k AS k ORDER BY k DESC LIMIT 3").is_ok());
    }
}
