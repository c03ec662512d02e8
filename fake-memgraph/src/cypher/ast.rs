//! Syntax tree of the supported statements.

use crate::value::Value;

/// Replication mode of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum SyncMode {
    /// `SYNC`.
    Sync,
    /// `ASYNC`.
    Async,
    /// `STRICT_SYNC` (3.5+).
    StrictSync,
}

impl SyncMode {
    /// The lower-case form shown by `SHOW REPLICAS`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Sync => "sync",
            SyncMode::Async => "async",
            SyncMode::StrictSync => "strict_sync",
        }
    }
}

/// One parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// A replication query.
    Replication(ReplicationQuery),
    /// A snapshot query.
    Snapshot(SnapshotQuery),
    /// `SHOW STORAGE INFO`.
    ShowStorageInfo,
    /// The query string `BEGIN` (opens an explicit transaction, Memgraph-style).
    Begin,
    /// The query string `COMMIT`.
    Commit,
    /// The query string `ROLLBACK`.
    Rollback,
    /// A regular Cypher query.
    Cypher(CypherQuery),
}

/// Replication queries (§1 of the reference).
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicationQuery {
    /// `SET REPLICATION ROLE TO MAIN` (a port clause is parsed and ignored).
    SetRoleMain,
    /// `SET REPLICATION ROLE TO REPLICA [WITH PORT literal]`.
    SetRoleReplica {
        /// The literal after `WITH PORT`, if any (validated when executed).
        port: Option<Value>,
    },
    /// `SHOW REPLICATION ROLE`.
    ShowRole,
    /// `REGISTER REPLICA name MODE TO literal`.
    Register {
        /// Replica name.
        name: String,
        /// Mode.
        mode: SyncMode,
        /// The socket-address literal (validated when executed).
        address: Value,
    },
    /// `DROP REPLICA name`.
    Drop {
        /// Replica name.
        name: String,
    },
    /// `SHOW REPLICAS`.
    ShowReplicas,
}

/// Snapshot queries (§4 of the reference).
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotQuery {
    /// `CREATE SNAPSHOT`.
    Create,
    /// `SHOW SNAPSHOTS`.
    Show,
    /// `SHOW NEXT SNAPSHOT`.
    ShowNext,
    /// `RECOVER SNAPSHOT literal [FORCE]`.
    Recover {
        /// The path literal.
        path: Value,
        /// `FORCE` given.
        force: bool,
    },
}

/// A regular query: a sequence of clauses.
#[derive(Debug, Clone, PartialEq)]
pub struct CypherQuery {
    /// Clauses in order.
    pub clauses: Vec<Clause>,
}

impl CypherQuery {
    /// Whether the query writes (CREATE or DELETE).
    pub fn is_write(&self) -> bool {
        self.clauses.iter().any(|c| matches!(c, Clause::Create(_) | Clause::Delete { .. }))
    }

    /// Column names of the result.
    pub fn fields(&self) -> Vec<String> {
        match self.clauses.last() {
            Some(Clause::Return(r)) => r.items.iter().map(|i| i.name.clone()).collect(),
            _ => Vec::new(),
        }
    }
}

/// A clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    /// `MATCH patterns [WHERE expr]`.
    Match {
        /// Node patterns (comma-separated: a cartesian product).
        patterns: Vec<NodePattern>,
        /// Filter.
        filter: Option<Expr>,
    },
    /// `CREATE patterns`.
    Create(Vec<NodePattern>),
    /// `[DETACH] DELETE exprs`.
    Delete {
        /// `DETACH` given.
        detach: bool,
        /// What to delete.
        exprs: Vec<Expr>,
    },
    /// `RETURN ...`.
    Return(Return),
}

/// `(var:Label:Other {k: v})`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePattern {
    /// Variable, if named.
    pub var: Option<String>,
    /// Labels.
    pub labels: Vec<String>,
    /// Property constraints / values.
    pub props: Vec<(String, Expr)>,
}

/// The `RETURN` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Return {
    /// `DISTINCT` given.
    pub distinct: bool,
    /// Projected items.
    pub items: Vec<ReturnItem>,
    /// `ORDER BY` keys with `true` for descending.
    pub order_by: Vec<(Expr, bool)>,
    /// `SKIP`.
    pub skip: Option<Expr>,
    /// `LIMIT`.
    pub limit: Option<Expr>,
}

/// One projected item.
#[derive(Debug, Clone, PartialEq)]
pub struct ReturnItem {
    /// The expression.
    pub expr: Expr,
    /// Column name: the alias, or the expression's source text.
    pub name: String,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `OR`.
    Or,
    /// `XOR`.
    Xor,
    /// `AND`.
    And,
    /// `=`.
    Eq,
    /// `<>`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal value.
    Literal(Value),
    /// `$name`.
    Param(String),
    /// A variable.
    Var(String),
    /// `expr.key`.
    Prop(Box<Expr>, String),
    /// `[a, b]`.
    List(Vec<Expr>),
    /// `{k: v}`.
    Map(Vec<(String, Expr)>),
    /// `count(*)`.
    CountStar,
    /// A function call (name lower-cased).
    Call {
        /// Function name.
        name: String,
        /// `DISTINCT` inside an aggregate.
        distinct: bool,
        /// Arguments.
        args: Vec<Expr>,
    },
    /// `NOT e`.
    Not(Box<Expr>),
    /// `-e`.
    Neg(Box<Expr>),
    /// `e IS [NOT] NULL` (`true` = IS NOT NULL).
    IsNull(Box<Expr>, bool),
    /// A binary operation.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `n:Label:Other`: whether the node has every label.
    HasLabels(Box<Expr>, Vec<String>),
}

impl Expr {
    /// Whether the expression contains an aggregate (`count`, `max`, `min`).
    pub fn has_aggregate(&self) -> bool {
        match self {
            Expr::CountStar => true,
            Expr::Call { name, args, .. } => {
                matches!(name.as_str(), "count" | "max" | "min") || args.iter().any(Expr::has_aggregate)
            }
            Expr::Prop(e, _) | Expr::Not(e) | Expr::Neg(e) | Expr::IsNull(e, _) | Expr::HasLabels(e, _) => {
                e.has_aggregate()
            }
            Expr::Binary(_, a, b) => a.has_aggregate() || b.has_aggregate(),
            Expr::List(items) => items.iter().any(Expr::has_aggregate),
            Expr::Map(items) => items.iter().any(|(_, e)| e.has_aggregate()),
            Expr::Literal(_) | Expr::Param(_) | Expr::Var(_) => false,
        }
    }

    /// Calls `f` on every parameter name used.
    pub fn for_each_param(&self, f: &mut dyn FnMut(&str)) {
        self.walk(&mut |e| {
            if let Expr::Param(p) = e {
                f(p)
            }
        });
    }

    /// Calls `f` on every variable used.
    pub fn for_each_var(&self, f: &mut dyn FnMut(&str)) {
        self.walk(&mut |e| {
            if let Expr::Var(v) = e {
                f(v)
            }
        });
    }

    fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Prop(e, _) | Expr::Not(e) | Expr::Neg(e) | Expr::IsNull(e, _) | Expr::HasLabels(e, _) => e.walk(f),
            Expr::Binary(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::List(items) | Expr::Call { args: items, .. } => items.iter().for_each(|e| e.walk(f)),
            Expr::Map(items) => items.iter().for_each(|(_, e)| e.walk(f)),
            Expr::Literal(_) | Expr::Param(_) | Expr::Var(_) | Expr::CountStar => {}
        }
    }
}
