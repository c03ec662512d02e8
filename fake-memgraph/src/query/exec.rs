//! Executes the Cypher subset against the graph plus a transaction's uncommitted changes.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use super::{QueryError, QueryOutput};
use crate::cypher::ast::{BinOp, Clause, CypherQuery, Expr, NodePattern, Return};
use crate::storage::{Graph, NodeData, Op, to_node};
use crate::value::Value;

/// Functions the executor knows (checked at RUN time, as Memgraph does).
pub const FUNCTIONS: &[&str] = &[
    "count",
    "max",
    "min",
    "timestamp",
    "id",
    "labels",
    "properties",
    "keys",
    "size",
    "tostring",
    "tointeger",
    "coalesce",
    "abs",
    "range",
];

/// Uncommitted changes of one transaction (auto-commit or explicit).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TxState {
    /// Nodes created in this transaction.
    pub created: BTreeMap<i64, NodeData>,
    /// Nodes deleted in this transaction.
    pub deleted: BTreeSet<i64>,
    /// The changes in order, for the commit.
    pub ops: Vec<Op>,
}

/// What a query runs against.
pub struct ExecEnv<'a> {
    /// Committed data (node ids are allocated from it).
    pub graph: &'a mut Graph,
    /// The transaction's changes.
    pub tx: &'a mut TxState,
    /// Query parameters.
    pub params: &'a BTreeMap<String, Value>,
    /// `timestamp()` value (Unix µs).
    pub now_micros: i64,
}

/// What a variable is bound to. A matched node is bound by id and looked up only when the
/// query needs it, so a scan over many nodes builds none of them unless it returns them.
#[derive(Debug, Clone)]
enum Bound {
    /// A computed value.
    Value(Value),
    /// A node visible to the transaction.
    Node(i64),
}

/// The bindings of one row: few variables, so a vector beats a map.
#[derive(Debug, Clone, Default)]
struct Row(Vec<(String, Bound)>);

impl Row {
    fn new() -> Self {
        Row(Vec::new())
    }

    fn get(&self, name: &str) -> Option<&Bound> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, b)| b)
    }

    fn bind(&mut self, name: &str, bound: Bound) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = bound,
            None => self.0.push((name.to_owned(), bound)),
        }
    }

    fn insert(&mut self, name: String, value: Value) {
        self.bind(&name, Bound::Value(value));
    }
}

fn rt(msg: impl Into<String>) -> QueryError {
    QueryError::client(msg)
}

impl ExecEnv<'_> {
    /// Nodes visible to the transaction, in id order, borrowed: scans only build the nodes
    /// they match.
    fn visible_nodes(&self) -> Vec<(i64, &NodeData)> {
        let mut out: Vec<(i64, &NodeData)> =
            self.graph.nodes.iter().filter(|(id, _)| !self.tx.deleted.contains(id)).map(|(id, d)| (*id, d)).collect();
        // Both maps are ordered by id; only a transaction's own creations need merging in.
        if !self.tx.created.is_empty() {
            out.extend(self.tx.created.iter().filter(|(id, _)| !self.tx.deleted.contains(id)).map(|(id, d)| (*id, d)));
            out.sort_by_key(|(id, _)| *id);
        }
        out
    }

    /// A node visible to the transaction.
    fn node(&self, id: i64) -> Option<&NodeData> {
        if self.tx.deleted.contains(&id) {
            return None;
        }
        self.tx.created.get(&id).or_else(|| self.graph.nodes.get(&id))
    }

    /// Whether `e` is null, without building a node bound to a variable.
    fn is_null(&self, e: &Expr, row: &Row) -> Result<bool, QueryError> {
        if let Expr::Var(v) = e
            && let Some(Bound::Node(id)) = row.get(v)
        {
            return Ok(self.node(*id).is_none());
        }
        Ok(self.eval(e, row)?.is_null())
    }

    fn eval(&self, e: &Expr, row: &Row) -> Result<Value, QueryError> {
        Ok(match e {
            Expr::Literal(v) => v.clone(),
            Expr::Param(p) => self.params.get(p).cloned().ok_or_else(|| rt(format!("Parameter ${p} not provided.")))?,
            Expr::Var(v) => match row.get(v) {
                Some(Bound::Value(value)) => value.clone(),
                Some(Bound::Node(id)) => self.node(*id).map_or(Value::Null, |d| Value::Node(to_node(*id, d))),
                None => return Err(rt(format!("Unbound variable: {v}."))),
            },
            // A property of a bound node is read in place.
            Expr::Prop(inner, key) if matches!(&**inner, Expr::Var(v) if matches!(row.get(v), Some(Bound::Node(_)))) => {
                let Expr::Var(v) = &**inner else { unreachable!("matched above") };
                let Some(Bound::Node(id)) = row.get(v) else { unreachable!("matched above") };
                self.node(*id).and_then(|d| d.properties.get(key).cloned()).unwrap_or(Value::Null)
            }
            Expr::Prop(inner, key) => match self.eval(inner, row)? {
                Value::Node(n) => n.properties.get(key).cloned().unwrap_or(Value::Null),
                Value::Map(m) => m.get(key).cloned().unwrap_or(Value::Null),
                Value::Null => Value::Null,
                other => {
                    return Err(rt(format!(
                        "Only nodes, edges, maps, temporal types and points have properties to be looked up, got {}.",
                        other.type_name()
                    )));
                }
            },
            Expr::List(items) => Value::List(items.iter().map(|i| self.eval(i, row)).collect::<Result<_, _>>()?),
            Expr::Map(items) => Value::Map(
                items.iter().map(|(k, v)| Ok((k.clone(), self.eval(v, row)?))).collect::<Result<_, QueryError>>()?,
            ),
            Expr::CountStar => return Err(rt("Aggregation functions are only allowed in WITH and RETURN.")),
            Expr::Call { name, args, .. } => self.call(name, args, row)?,
            Expr::Not(inner) => match self.eval(inner, row)? {
                Value::Bool(b) => Value::Bool(!b),
                Value::Null => Value::Null,
                other => return Err(rt(format!("Invalid types: {} for 'NOT'.", other.type_name()))),
            },
            Expr::Neg(inner) => match self.eval(inner, row)? {
                Value::Int(i) => Value::Int(i.checked_neg().ok_or_else(|| rt("Integer overflow."))?),
                Value::Float(f) => Value::Float(-f),
                Value::Null => Value::Null,
                other => return Err(rt(format!("Invalid type: {} for unary '-'.", other.type_name()))),
            },
            Expr::IsNull(inner, not) => Value::Bool(self.eval(inner, row)?.is_null() != *not),
            Expr::Binary(op, a, b) => binary(*op, self.eval(a, row)?, self.eval(b, row)?)?,
            Expr::HasLabels(inner, labels) => match self.eval(inner, row)? {
                Value::Node(n) => Value::Bool(labels.iter().all(|l| n.labels.contains(l))),
                Value::Null => Value::Null,
                other => return Err(rt(format!("Expected a node for label test, got {}.", other.type_name()))),
            },
        })
    }

    fn call(&self, name: &str, args: &[Expr], row: &Row) -> Result<Value, QueryError> {
        let vals = args.iter().map(|a| self.eval(a, row)).collect::<Result<Vec<_>, _>>()?;
        let one = |what: &str| -> Result<&Value, QueryError> {
            match vals.as_slice() {
                [v] => Ok(v),
                _ => Err(rt(format!("'{what}' requires exactly one argument."))),
            }
        };
        Ok(match name {
            "timestamp" => Value::Int(self.now_micros),
            "id" => match one("id")? {
                Value::Node(n) => Value::Int(n.id),
                Value::Null => Value::Null,
                v => return Err(rt(format!("'id' argument must be a node or an edge, got {}.", v.type_name()))),
            },
            "labels" => match one("labels")? {
                Value::Node(n) => Value::List(n.labels.iter().map(|l| Value::from(l.as_str())).collect()),
                Value::Null => Value::Null,
                v => return Err(rt(format!("'labels' argument must be a node, got {}.", v.type_name()))),
            },
            "properties" => match one("properties")? {
                Value::Node(n) => Value::Map(n.properties.clone()),
                Value::Map(m) => Value::Map(m.clone()),
                Value::Null => Value::Null,
                v => return Err(rt(format!("'properties' argument must be a node, got {}.", v.type_name()))),
            },
            "keys" => match one("keys")? {
                Value::Node(n) => Value::List(n.properties.keys().map(|k| Value::from(k.as_str())).collect()),
                Value::Map(m) => Value::List(m.keys().map(|k| Value::from(k.as_str())).collect()),
                Value::Null => Value::Null,
                v => return Err(rt(format!("'keys' argument must be a node or a map, got {}.", v.type_name()))),
            },
            "size" => match one("size")? {
                Value::List(l) => Value::Int(l.len() as i64),
                Value::String(s) => Value::Int(s.chars().count() as i64),
                Value::Map(m) => Value::Int(m.len() as i64),
                Value::Null => Value::Null,
                v => {
                    return Err(rt(format!(
                        "'size' argument must be a string, a list or a map, got {}.",
                        v.type_name()
                    )));
                }
            },
            "tostring" => match one("toString")? {
                Value::String(s) => Value::String(s.clone()),
                Value::Int(i) => Value::String(i.to_string()),
                Value::Float(f) => Value::String(format!("{f:?}")),
                Value::Bool(b) => Value::String(b.to_string()),
                Value::Null => Value::Null,
                v => {
                    return Err(rt(format!(
                        "'toString' argument must be a number, a string or a boolean, got {}.",
                        v.type_name()
                    )));
                }
            },
            "tointeger" => match one("toInteger")? {
                Value::Int(i) => Value::Int(*i),
                Value::Float(f) => Value::Int(f.trunc() as i64),
                Value::String(s) => s.trim().parse().map(Value::Int).unwrap_or(Value::Null),
                Value::Bool(b) => Value::Int(i64::from(*b)),
                Value::Null => Value::Null,
                v => {
                    return Err(rt(format!(
                        "'toInteger' argument must be a number, a string or a boolean, got {}.",
                        v.type_name()
                    )));
                }
            },
            "abs" => match one("abs")? {
                Value::Int(i) => Value::Int(i.checked_abs().ok_or_else(|| rt("Integer overflow."))?),
                Value::Float(f) => Value::Float(f.abs()),
                Value::Null => Value::Null,
                v => return Err(rt(format!("'abs' argument must be a number, got {}.", v.type_name()))),
            },
            "coalesce" => vals.iter().find(|v| !v.is_null()).cloned().unwrap_or(Value::Null),
            "range" => match vals.as_slice() {
                [Value::Int(a), Value::Int(b)] if b - a < 1_000_000 => Value::List((*a..=*b).map(Value::Int).collect()),
                _ => return Err(rt("'range' expects two integer arguments (at most a million apart).")),
            },
            "count" | "max" | "min" => return Err(rt("Aggregation functions are only allowed in WITH and RETURN.")),
            other => return Err(rt(format!("Function '{other}' doesn't exist."))),
        })
    }

    fn match_pattern(&self, p: &NodePattern, row: &Row, out: &mut Vec<Row>) -> Result<(), QueryError> {
        let mut want = Vec::with_capacity(p.props.len());
        for (k, e) in &p.props {
            want.push((k, self.eval(e, row)?));
        }
        let bound = p.var.as_ref().and_then(|v| row.get(v));
        for (id, data) in self.visible_nodes() {
            if let Some(b) = bound {
                match b {
                    Bound::Node(bid) if *bid == id => {}
                    Bound::Value(Value::Node(bn)) if bn.id == id => {}
                    _ => continue,
                }
            }
            if !p.labels.iter().all(|l| data.labels.contains(l)) {
                continue;
            }
            let props_ok = want.iter().all(|(k, v)| {
                data.properties.get(*k).is_some_and(|have| match (have, v) {
                    // The common case without copying values; anything else follows Cypher's `=`.
                    (Value::Int(a), Value::Int(b)) => a == b,
                    (Value::String(a), Value::String(b)) => a == b,
                    _ => matches!(binary(BinOp::Eq, have.clone(), v.clone()), Ok(Value::Bool(true))),
                })
            });
            if !props_ok {
                continue;
            }
            let mut r = row.clone();
            if let Some(v) = &p.var {
                r.bind(v, Bound::Node(id));
            }
            out.push(r);
        }
        Ok(())
    }

    fn create(&mut self, p: &NodePattern, row: &mut Row, created: &mut i64) -> Result<(), QueryError> {
        let mut properties = BTreeMap::new();
        for (k, e) in &p.props {
            let v = self.eval(e, row)?;
            if matches!(v, Value::Node(_) | Value::Relationship(_)) {
                return Err(rt("Cannot set a node or an edge as a property value."));
            }
            if !v.is_null() {
                properties.insert(k.clone(), v);
            }
        }
        let id = self.graph.next_id;
        self.graph.next_id += 1;
        let data = NodeData { labels: p.labels.clone(), properties: properties.clone() };
        if let Some(v) = &p.var {
            row.bind(v, Bound::Node(id));
        }
        self.tx.created.insert(id, data);
        self.tx.ops.push(Op::CreateNode { id, labels: p.labels.clone(), properties });
        *created += 1;
        Ok(())
    }

    fn delete(&mut self, v: Value, deleted: &mut i64) -> Result<(), QueryError> {
        match v {
            Value::Node(n) => {
                if self.tx.deleted.insert(n.id) {
                    self.tx.ops.push(Op::DeleteNode { id: n.id });
                    *deleted += 1;
                }
                Ok(())
            }
            Value::Null => Ok(()),
            other => Err(rt(format!("Only edges, nodes and paths can be deleted, got {}.", other.type_name()))),
        }
    }
}

/// Runs a regular query; its writes land in `env.tx`.
pub fn run(q: &CypherQuery, env: &mut ExecEnv<'_>) -> Result<QueryOutput, QueryError> {
    let mut rows: Vec<Row> = vec![Row::new()];
    let (mut created, mut deleted) = (0i64, 0i64);
    let mut out = QueryOutput::default();
    let mut clauses = q.clauses.iter().peekable();
    while let Some(clause) = clauses.next() {
        // `MATCH (n:...) RETURN <aggregates>` from the start: fold over the scan instead of
        // building a row per node (the shape of counting and max queries).
        if let (Clause::Match { patterns, filter: None }, Some(Clause::Return(r))) = (clause, clauses.peek())
            && rows.len() == 1
            && rows[0].0.is_empty()
            && let [pattern] = patterns.as_slice()
            && let Some(values) = fold_aggregates(pattern, r, env)?
        {
            out.rows = vec![values];
            clauses.next();
            continue;
        }
        match clause {
            Clause::Match { patterns, filter } => {
                for p in patterns {
                    let mut next = Vec::new();
                    for row in &rows {
                        env.match_pattern(p, row, &mut next)?;
                    }
                    rows = next;
                }
                if let Some(f) = filter {
                    let mut kept = Vec::with_capacity(rows.len());
                    for row in rows {
                        if env.eval(f, &row)? == Value::Bool(true) {
                            kept.push(row);
                        }
                    }
                    rows = kept;
                }
            }
            Clause::Create(patterns) => {
                for row in rows.iter_mut() {
                    for p in patterns {
                        env.create(p, row, &mut created)?;
                    }
                }
            }
            Clause::Delete { exprs, .. } => {
                for row in &rows {
                    for e in exprs {
                        let v = env.eval(e, row)?;
                        env.delete(v, &mut deleted)?;
                    }
                }
            }
            Clause::Return(r) => out.rows = project(r, &rows, env)?,
        }
    }
    if created > 0 {
        out.stats.insert("nodes-created".into(), created);
    }
    if deleted > 0 {
        out.stats.insert("nodes-deleted".into(), deleted);
    }
    Ok(out)
}

/// A running aggregate of [`fold_aggregates`].
enum Fold<'e> {
    Count(Option<&'e Expr>, i64),
    Best(&'e Expr, bool, Option<Value>),
}

/// `RETURN` items that are all plain `count`, `max` or `min` aggregates (no DISTINCT, ORDER BY,
/// SKIP or LIMIT), folded over the nodes `pattern` matches with one reused row. `None` when the
/// return has another shape; the general path then handles it.
fn fold_aggregates(p: &NodePattern, r: &Return, env: &ExecEnv<'_>) -> Result<Option<Vec<Value>>, QueryError> {
    if r.distinct || !r.order_by.is_empty() || r.skip.is_some() || r.limit.is_some() || !p.props.is_empty() {
        return Ok(None);
    }
    let mut folds = Vec::with_capacity(r.items.len());
    for item in &r.items {
        match &item.expr {
            Expr::CountStar => folds.push(Fold::Count(None, 0)),
            Expr::Call { name, args, distinct: false } if args.len() == 1 && !args[0].has_aggregate() => {
                match name.as_str() {
                    "count" => folds.push(Fold::Count(Some(&args[0]), 0)),
                    "max" => folds.push(Fold::Best(&args[0], true, None)),
                    "min" => folds.push(Fold::Best(&args[0], false, None)),
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        }
    }
    let mut row = Row::new();
    for (id, data) in env.visible_nodes() {
        if !p.labels.iter().all(|l| data.labels.contains(l)) {
            continue;
        }
        if let Some(v) = &p.var {
            row.bind(v, Bound::Node(id));
        }
        // The node itself and its properties are read from `data`, without a lookup.
        let direct = |e: &Expr| -> Option<Value> {
            match e {
                Expr::Prop(inner, key) if matches!(&**inner, Expr::Var(v) if p.var.as_ref() == Some(v)) => {
                    Some(data.properties.get(key).cloned().unwrap_or(Value::Null))
                }
                _ => None,
            }
        };
        for fold in &mut folds {
            match fold {
                Fold::Count(None, n) => *n += 1,
                Fold::Count(Some(Expr::Var(v)), n) if p.var.as_ref() == Some(v) => *n += 1,
                Fold::Count(Some(e), n) => {
                    let null = match direct(e) {
                        Some(v) => v.is_null(),
                        None => env.is_null(e, &row)?,
                    };
                    if !null {
                        *n += 1;
                    }
                }
                Fold::Best(e, max, best) => {
                    let v = match direct(e) {
                        Some(v) => v,
                        None => env.eval(e, &row)?,
                    };
                    if v.is_null() {
                        continue;
                    }
                    let better = best.as_ref().is_none_or(|b| {
                        let o = order(&v, b);
                        if *max { o == Ordering::Greater } else { o == Ordering::Less }
                    });
                    if better {
                        *best = Some(v);
                    }
                }
            }
        }
    }
    Ok(Some(
        folds
            .into_iter()
            .map(|f| match f {
                Fold::Count(_, n) => Value::Int(n),
                Fold::Best(_, _, best) => best.unwrap_or(Value::Null),
            })
            .collect(),
    ))
}

/// A key for grouping and DISTINCT (values compared structurally).
fn key_of(vals: &[Value]) -> String {
    serde_json::to_string(vals).unwrap_or_default()
}

fn project(r: &Return, rows: &[Row], env: &ExecEnv<'_>) -> Result<Vec<Vec<Value>>, QueryError> {
    let aggregate = r.items.iter().any(|i| i.expr.has_aggregate());
    // Each output row keeps a context (bindings + aliases) for ORDER BY.
    let mut produced: Vec<(Vec<Value>, Row)> = Vec::new();
    if aggregate {
        let mut groups: Vec<(Vec<Value>, Vec<&Row>)> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for row in rows {
            let mut key = Vec::new();
            for i in r.items.iter().filter(|i| !i.expr.has_aggregate()) {
                key.push(env.eval(&i.expr, row)?);
            }
            let k = key_of(&key);
            match index.get(&k) {
                Some(&g) => groups[g].1.push(row),
                None => {
                    index.insert(k, groups.len());
                    groups.push((key, vec![row]));
                }
            }
        }
        if groups.is_empty() && r.items.iter().all(|i| i.expr.has_aggregate()) {
            groups.push((Vec::new(), Vec::new()));
        }
        for (key, members) in groups {
            let mut key_iter = key.into_iter();
            let mut vals = Vec::with_capacity(r.items.len());
            for item in &r.items {
                if item.expr.has_aggregate() {
                    vals.push(aggregate_expr(&item.expr, &members, env)?);
                } else {
                    vals.push(key_iter.next().unwrap_or(Value::Null));
                }
            }
            let mut ctx = members.first().map(|r| (*r).clone()).unwrap_or_default();
            for (item, v) in r.items.iter().zip(&vals) {
                ctx.insert(item.name.clone(), v.clone());
            }
            produced.push((vals, ctx));
        }
    } else {
        for row in rows {
            let mut vals = Vec::with_capacity(r.items.len());
            for item in &r.items {
                vals.push(env.eval(&item.expr, row)?);
            }
            let mut ctx = row.clone();
            for (item, v) in r.items.iter().zip(&vals) {
                ctx.insert(item.name.clone(), v.clone());
            }
            produced.push((vals, ctx));
        }
    }
    if r.distinct {
        let mut seen = BTreeSet::new();
        produced.retain(|(vals, _)| seen.insert(key_of(vals)));
    }
    if !r.order_by.is_empty() {
        let mut keyed = Vec::with_capacity(produced.len());
        for (vals, ctx) in produced {
            let mut keys = Vec::with_capacity(r.order_by.len());
            for (e, _) in &r.order_by {
                keys.push(env.eval(e, &ctx)?);
            }
            keyed.push((keys, vals, ctx));
        }
        keyed.sort_by(|a, b| {
            for ((ka, kb), (_, desc)) in a.0.iter().zip(&b.0).zip(&r.order_by) {
                let o = order(ka, kb);
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        produced = keyed.into_iter().map(|(_, v, c)| (v, c)).collect();
    }
    let count = |e: &Option<Expr>, what: &str| -> Result<Option<usize>, QueryError> {
        match e {
            None => Ok(None),
            Some(e) => match env.eval(e, &Row::new())? {
                Value::Int(i) if i >= 0 => Ok(Some(i as usize)),
                _ => Err(rt(format!("Parameter of {what} must be a non-negative integer."))),
            },
        }
    };
    let skip = count(&r.skip, "SKIP")?.unwrap_or(0);
    let limit = count(&r.limit, "LIMIT")?.unwrap_or(usize::MAX);
    Ok(produced.into_iter().skip(skip).take(limit).map(|(v, _)| v).collect())
}

fn aggregate_expr(e: &Expr, rows: &[&Row], env: &ExecEnv<'_>) -> Result<Value, QueryError> {
    match e {
        Expr::CountStar => Ok(Value::Int(rows.len() as i64)),
        Expr::Call { name, args, distinct } if name == "count" => {
            let [arg] = args.as_slice() else {
                return Err(rt("'count' requires exactly one argument."));
            };
            let mut seen = BTreeSet::new();
            let mut n = 0i64;
            for row in rows {
                if env.is_null(arg, row)? {
                    continue;
                }
                if *distinct && !seen.insert(key_of(std::slice::from_ref(&env.eval(arg, row)?))) {
                    continue;
                }
                n += 1;
            }
            Ok(Value::Int(n))
        }
        // Nulls are skipped; no rows (or only nulls) give null, as in Cypher.
        Expr::Call { name, args, .. } if name == "max" || name == "min" => {
            let [arg] = args.as_slice() else {
                return Err(rt(format!("'{name}' requires exactly one argument.")));
            };
            let mut best: Option<Value> = None;
            for row in rows {
                let v = env.eval(arg, row)?;
                if v.is_null() {
                    continue;
                }
                let better = best.as_ref().is_none_or(|b| {
                    let o = order(&v, b);
                    if name == "max" { o == Ordering::Greater } else { o == Ordering::Less }
                });
                if better {
                    best = Some(v);
                }
            }
            Ok(best.unwrap_or(Value::Null))
        }
        _ => Err(rt("Aggregations inside expressions are not supported by this server.")),
    }
}

/// Cypher ordering for ORDER BY: numbers, then strings, booleans; nulls last.
fn order(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Map(_) => 0,
            Value::Node(_) => 1,
            Value::Relationship(_) => 2,
            Value::List(_) => 3,
            Value::String(_) => 5,
            Value::Bool(_) => 6,
            Value::Int(_) | Value::Float(_) => 7,
            Value::Null => 9,
            _ => 8,
        }
    }
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Int(x), Value::Float(y)) => (*x as f64).total_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.total_cmp(&(*y as f64)),
        (Value::Float(x), Value::Float(y)) => x.total_cmp(y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Node(x), Value::Node(y)) => x.id.cmp(&y.id),
        _ => rank(a).cmp(&rank(b)),
    }
}

fn num_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value) -> Option<bool> {
    Some(match (a, b) {
        (Value::Null, _) | (_, Value::Null) => return None,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => num_cmp(a, b) == Some(Ordering::Equal),
        (Value::List(x), Value::List(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            for (p, q) in x.iter().zip(y) {
                match equal(p, q) {
                    Some(true) => {}
                    other => return other,
                }
            }
            true
        }
        (Value::Node(x), Value::Node(y)) => x.id == y.id,
        _ => a == b,
    })
}

fn binary(op: BinOp, a: Value, b: Value) -> Result<Value, QueryError> {
    use Value::{Bool, Float, Int, List, Null};
    let type_err = |a: &Value, b: &Value, sym: &str| {
        rt(format!("Invalid types: {} and {} for '{sym}'.", a.type_name(), b.type_name()))
    };
    Ok(match op {
        BinOp::And => match (a, b) {
            (Bool(false), _) | (_, Bool(false)) => Bool(false),
            (Bool(true), Bool(true)) => Bool(true),
            (Null | Bool(_), Null | Bool(_)) => Null,
            (a, b) => return Err(type_err(&a, &b, "AND")),
        },
        BinOp::Or => match (a, b) {
            (Bool(true), _) | (_, Bool(true)) => Bool(true),
            (Bool(false), Bool(false)) => Bool(false),
            (Null | Bool(_), Null | Bool(_)) => Null,
            (a, b) => return Err(type_err(&a, &b, "OR")),
        },
        BinOp::Xor => match (a, b) {
            (Bool(x), Bool(y)) => Bool(x != y),
            (Null | Bool(_), Null | Bool(_)) => Null,
            (a, b) => return Err(type_err(&a, &b, "XOR")),
        },
        BinOp::Eq => equal(&a, &b).map_or(Null, Bool),
        BinOp::Ne => equal(&a, &b).map_or(Null, |e| Bool(!e)),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            if a.is_null() || b.is_null() {
                return Ok(Null);
            }
            match num_cmp(&a, &b) {
                None => return Err(type_err(&a, &b, "comparison")),
                Some(o) => Bool(match op {
                    BinOp::Lt => o == Ordering::Less,
                    BinOp::Le => o != Ordering::Greater,
                    BinOp::Gt => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                }),
            }
        }
        BinOp::Add => match (a, b) {
            (Null, _) | (_, Null) => Null,
            (Int(x), Int(y)) => Int(x.checked_add(y).ok_or_else(|| rt("Integer overflow."))?),
            (Int(x), Float(y)) => Float(x as f64 + y),
            (Float(x), Int(y)) => Float(x + y as f64),
            (Float(x), Float(y)) => Float(x + y),
            (Value::String(x), Value::String(y)) => Value::String(x + &y),
            (List(mut x), List(y)) => {
                x.extend(y);
                List(x)
            }
            (List(mut x), y) => {
                x.push(y);
                List(x)
            }
            (a, b) => return Err(type_err(&a, &b, "+")),
        },
        BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
            let sym = match op {
                BinOp::Sub => "-",
                BinOp::Mul => "*",
                BinOp::Div => "/",
                _ => "%",
            };
            match (a, b) {
                (Null, _) | (_, Null) => Null,
                (Int(x), Int(y)) => {
                    let r = match op {
                        BinOp::Sub => x.checked_sub(y),
                        BinOp::Mul => x.checked_mul(y),
                        _ if y == 0 => return Err(rt("Division by zero.")),
                        BinOp::Div => x.checked_div(y),
                        _ => x.checked_rem(y),
                    };
                    Int(r.ok_or_else(|| rt("Integer overflow."))?)
                }
                (a @ (Int(_) | Float(_)), b @ (Int(_) | Float(_))) => {
                    let f = |v: &Value| match v {
                        Int(i) => *i as f64,
                        Float(x) => *x,
                        _ => 0.0,
                    };
                    let (x, y) = (f(&a), f(&b));
                    Float(match op {
                        BinOp::Sub => x - y,
                        BinOp::Mul => x * y,
                        BinOp::Div => x / y,
                        _ => x % y,
                    })
                }
                (a, b) => return Err(type_err(&a, &b, sym)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cypher::{Statement, parse};
    use crate::version::NEWEST;

    fn q(src: &str) -> CypherQuery {
        match parse(src, NEWEST).unwrap() {
            Statement::Cypher(q) => q,
            other => panic!("not cypher: {other:?}"),
        }
    }

    struct Db {
        graph: Graph,
        tx: TxState,
    }

    impl Db {
        fn run(&mut self, src: &str, params: &[(&str, Value)]) -> Result<QueryOutput, QueryError> {
            let params: BTreeMap<String, Value> = params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            let mut env = ExecEnv { graph: &mut self.graph, tx: &mut self.tx, params: &params, now_micros: 42 };
            let out = run(&q(src), &mut env)?;
            // Auto-commit: apply the changes.
            for op in std::mem::take(&mut self.tx.ops) {
                self.graph.apply(&op);
            }
            self.tx = TxState::default();
            Ok(out)
        }
    }

    fn db() -> Db {
        Db { graph: Graph::default(), tx: TxState::default() }
    }

    #[test]
    fn create_match_count_delete() {
        let mut d = db();
        let out = d.run("CREATE (n:L {k: $k, s: 'x'}) RETURN n", &[("k", Value::Int(1))]).unwrap();
        assert_eq!(out.stats.get("nodes-created"), Some(&1));
        let Value::Node(n) = &out.rows[0][0] else { panic!("no node") };
        assert_eq!(n.labels, vec!["L".to_string()]);
        assert_eq!(n.properties.get("k"), Some(&Value::Int(1)));
        d.run("CREATE (n:L {k: 2})", &[]).unwrap();
        d.run("CREATE (n:Other {k: 2})", &[]).unwrap();
        let out = d.run("MATCH (n:L {k: 2}) RETURN n.k", &[]).unwrap();
        assert_eq!(out.rows, vec![vec![Value::Int(2)]]);
        let out = d.run("MATCH (n:L) RETURN count(n)", &[]).unwrap();
        assert_eq!(out.rows, vec![vec![Value::Int(2)]]);
        let out = d.run("MATCH (n) RETURN count(*) AS c", &[]).unwrap();
        assert_eq!(out.rows, vec![vec![Value::Int(3)]]);
        let out = d.run("MATCH (n) WHERE NOT n:L RETURN count(n) AS nodes", &[]).unwrap();
        assert_eq!(out.rows, vec![vec![Value::Int(1)]], "label tests in WHERE");
        let out = d.run("MATCH (n) WHERE n:L RETURN count(n) AS nodes", &[]).unwrap();
        assert_eq!(out.rows, vec![vec![Value::Int(2)]]);
        let out = d.run("MATCH (n:L) DELETE n", &[]).unwrap();
        assert_eq!(out.stats.get("nodes-deleted"), Some(&2));
        let out = d.run("MATCH (n:L) RETURN count(n)", &[]).unwrap();
        assert_eq!(out.rows, vec![vec![Value::Int(0)]]);
    }

    #[test]
    fn expressions() {
        let mut d = db();
        let out = d
            .run("RETURN 1 AS ping, timestamp() AS t, 1 + 2 * 3 AS a, 'a' + 'b' AS s, null IS NULL AS z", &[])
            .unwrap();
        assert_eq!(
            out.rows,
            vec![vec![Value::Int(1), Value::Int(42), Value::Int(7), Value::from("ab"), Value::Bool(true)]]
        );
        assert!(d.run("RETURN $missing", &[]).is_err());
        assert!(d.run("RETURN 1 / 0", &[]).is_err());
        assert!(d.run("RETURN nosuch(1)", &[]).is_err());
    }

    #[test]
    fn max_and_min_skip_nulls() {
        let mut d = db();
        let out = d.run("MATCH (n:N) RETURN max(n.k) AS hi, count(n) AS c", &[]).unwrap();
        assert_eq!(out.rows, vec![vec![Value::Null, Value::Int(0)]], "no rows: null and zero");
        for k in [3, 7, 1] {
            d.run("CREATE (:N {k: $k})", &[("k", Value::Int(k))]).unwrap();
        }
        d.run("CREATE (:N)", &[]).unwrap();
        let out = d.run("MATCH (n:N) RETURN max(n.k) AS hi, min(n.k) AS lo, count(n) AS c", &[]).unwrap();
        assert_eq!(out.rows, vec![vec![Value::Int(7), Value::Int(1), Value::Int(4)]]);
        assert!(d.run("MATCH (n:N) WHERE max(n.k) > 1 RETURN n", &[]).is_err(), "aggregates only in RETURN");
    }

    #[test]
    fn where_order_limit_distinct() {
        let mut d = db();
        for k in [3, 1, 2, 2] {
            d.run("CREATE (:N {k: $k})", &[("k", Value::Int(k))]).unwrap();
        }
        let out = d.run("MATCH (n:N) WHERE n.k >= 2 RETURN DISTINCT n.k AS k ORDER BY k DESC LIMIT 5", &[]).unwrap();
        assert_eq!(out.rows, vec![vec![Value::Int(3)], vec![Value::Int(2)]]);
        let out = d.run("MATCH (n:N) RETURN n.k AS k, count(n) AS c ORDER BY k", &[]).unwrap();
        assert_eq!(
            out.rows,
            vec![
                vec![Value::Int(1), Value::Int(1)],
                vec![Value::Int(2), Value::Int(2)],
                vec![Value::Int(3), Value::Int(1)]
            ]
        );
    }

    #[test]
    fn transaction_sees_its_own_writes() {
        let mut graph = Graph::default();
        let mut tx = TxState::default();
        let params = BTreeMap::new();
        let mut env = ExecEnv { graph: &mut graph, tx: &mut tx, params: &params, now_micros: 0 };
        run(&q("CREATE (:T)"), &mut env).unwrap();
        let out = run(&q("MATCH (n:T) RETURN count(n)"), &mut env).unwrap();
        assert_eq!(out.rows, vec![vec![Value::Int(1)]]);
        assert!(graph.nodes.is_empty(), "nothing committed yet");
        assert_eq!(tx.ops.len(), 1);
    }
}
