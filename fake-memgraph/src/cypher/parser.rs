//! Recursive-descent parser producing [`Statement`]s, with ANTLR-style error messages.

use super::SyntaxError;
use super::ast::*;
use super::lexer::{Tok, Token, lex};
use crate::value::Value;
use crate::version::MgVersion;

/// Parses one query for the emulated `version`.
pub fn parse(src: &str, version: MgVersion) -> Result<Statement, SyntaxError> {
    let toks = lex(src)?;
    let mut p = Parser { src, toks, pos: 0, version, depth: 0 };
    let stmt = p.statement()?;
    if p.peek().is_sym(";") {
        p.pos += 1;
    }
    if p.peek().tok != Tok::Eof {
        return Err(p.mismatched("{<EOF>, ';'}"));
    }
    Ok(stmt)
}

/// Deepest nesting of expressions and literals; deeper input is refused instead of overflowing the
/// stack.
const MAX_NESTING: usize = 64;

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
    version: MgVersion,
    depth: usize,
}

type PResult<T> = Result<T, SyntaxError>;

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The token list always ends with Eof and `pos` never moves past it.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn peek_at(&self, n: usize) -> &Token {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)]
    }

    fn error_at(&self, t: &Token, msg: String) -> SyntaxError {
        SyntaxError { line: t.line, col: t.col, msg }
    }

    fn mismatched(&self, expecting: &str) -> SyntaxError {
        let t = self.peek();
        self.error_at(t, format!("mismatched input '{}' expecting {expecting}", t.text(self.src)))
    }

    fn no_viable(&self) -> SyntaxError {
        let t = self.peek();
        self.error_at(t, format!("no viable alternative at input '{}'", t.text(self.src)))
    }

    fn accept_kw(&mut self, kw: &str) -> bool {
        if self.peek().is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> PResult<()> {
        if self.accept_kw(kw) { Ok(()) } else { Err(self.mismatched(kw)) }
    }

    fn accept_sym(&mut self, s: &str) -> bool {
        if self.peek().is_sym(s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> PResult<()> {
        if self.accept_sym(s) { Ok(()) } else { Err(self.mismatched(&format!("'{s}'"))) }
    }

    fn statement(&mut self) -> PResult<Statement> {
        let first = self.peek().clone();
        // Memgraph recognises these transaction-control strings before parsing.
        if self.peek_at(1).tok == Tok::Eof || self.peek_at(1).is_sym(";") {
            for (kw, st) in
                [("BEGIN", Statement::Begin), ("COMMIT", Statement::Commit), ("ROLLBACK", Statement::Rollback)]
            {
                if first.is_kw(kw) {
                    self.pos += 1;
                    return Ok(st);
                }
            }
        }
        if first.is_kw("SET") {
            self.pos += 1;
            return self.set_role().map(Statement::Replication);
        }
        if first.is_kw("SHOW") {
            self.pos += 1;
            return self.show();
        }
        if first.is_kw("REGISTER") {
            self.pos += 1;
            return self.register().map(Statement::Replication);
        }
        if first.is_kw("DROP") {
            self.pos += 1;
            self.expect_kw("REPLICA")?;
            let name = self.name()?;
            return Ok(Statement::Replication(ReplicationQuery::Drop { name }));
        }
        if first.is_kw("CREATE") && self.peek_at(1).is_kw("SNAPSHOT") {
            self.pos += 2;
            return Ok(Statement::Snapshot(SnapshotQuery::Create));
        }
        if first.is_kw("RECOVER") && self.version.has_snapshot_listing() {
            self.pos += 1;
            self.expect_kw("SNAPSHOT")?;
            let path = self.literal()?;
            if self.version.recover_with_config() && self.accept_kw("WITH") {
                // Credentials for remote sources; remote sources are not emulated.
                self.expect_kw("CONFIG")?;
                self.literal()?;
            }
            let force = self.accept_kw("FORCE");
            return Ok(Statement::Snapshot(SnapshotQuery::Recover { path, force }));
        }
        if first.is_kw("MATCH") || first.is_kw("CREATE") || first.is_kw("RETURN") {
            return self.cypher().map(Statement::Cypher);
        }
        Err(self.no_viable())
    }

    fn set_role(&mut self) -> PResult<ReplicationQuery> {
        self.expect_kw("REPLICATION")?;
        self.expect_kw("ROLE")?;
        self.expect_kw("TO")?;
        let main = if self.accept_kw("MAIN") {
            true
        } else if self.accept_kw("REPLICA") {
            false
        } else {
            return Err(self.mismatched("{MAIN, REPLICA}"));
        };
        let port = if self.accept_kw("WITH") {
            self.expect_kw("PORT")?;
            Some(self.literal()?)
        } else {
            None
        };
        Ok(if main { ReplicationQuery::SetRoleMain } else { ReplicationQuery::SetRoleReplica { port } })
    }

    fn show(&mut self) -> PResult<Statement> {
        if self.accept_kw("REPLICATION") {
            self.expect_kw("ROLE")?;
            return Ok(Statement::Replication(ReplicationQuery::ShowRole));
        }
        if self.accept_kw("REPLICAS") {
            return Ok(Statement::Replication(ReplicationQuery::ShowReplicas));
        }
        if self.version.has_snapshot_listing() && self.accept_kw("SNAPSHOTS") {
            return Ok(Statement::Snapshot(SnapshotQuery::Show));
        }
        if self.version.has_show_next_snapshot() && self.accept_kw("NEXT") {
            self.expect_kw("SNAPSHOT")?;
            return Ok(Statement::Snapshot(SnapshotQuery::ShowNext));
        }
        if self.accept_kw("STORAGE") {
            self.expect_kw("INFO")?;
            return Ok(Statement::ShowStorageInfo);
        }
        Err(self.no_viable())
    }

    fn register(&mut self) -> PResult<ReplicationQuery> {
        self.expect_kw("REPLICA")?;
        let name = self.name()?;
        let strict = self.version.has_strict_sync();
        let mode = if self.accept_kw("SYNC") {
            SyncMode::Sync
        } else if self.accept_kw("ASYNC") {
            SyncMode::Async
        } else if strict && self.accept_kw("STRICT_SYNC") {
            SyncMode::StrictSync
        } else if strict {
            return Err(self.mismatched("{ASYNC, STRICT_SYNC, SYNC}"));
        } else {
            return Err(self.mismatched("{ASYNC, SYNC}"));
        };
        self.expect_kw("TO")?;
        let address = self.literal()?;
        Ok(ReplicationQuery::Register { name, mode, address })
    }

    /// A symbolic name: unquoted identifier or back-tick escaped.
    fn name(&mut self) -> PResult<String> {
        match &self.peek().tok {
            Tok::Ident(s) | Tok::Escaped(s) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.mismatched("a symbolic name")),
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            let t = self.peek();
            return Err(self.error_at(t, format!("maximum nesting depth exceeded at input '{}'", t.text(self.src))));
        }
        Ok(())
    }

    /// A literal: number, string, boolean, null, list or map of literals.
    fn literal(&mut self) -> PResult<Value> {
        self.enter()?;
        let v = self.literal_inner();
        self.depth -= 1;
        v
    }

    fn literal_inner(&mut self) -> PResult<Value> {
        let t = self.peek().clone();
        let v = match &t.tok {
            Tok::Int(i) => Value::Int(*i),
            Tok::Float(f) => Value::Float(*f),
            Tok::Str(s) => Value::String(s.clone()),
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
            Tok::Ident(s) if s.eq_ignore_ascii_case("null") => Value::Null,
            Tok::Sym("-") => {
                self.pos += 1;
                return match self.literal()? {
                    Value::Int(i) => Ok(Value::Int(-i)),
                    Value::Float(f) => Ok(Value::Float(-f)),
                    _ => Err(self.error_at(&t, "mismatched input '-' expecting a literal".into())),
                };
            }
            Tok::Sym("[") => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.accept_sym("]") {
                    loop {
                        items.push(self.literal()?);
                        if self.accept_sym("]") {
                            break;
                        }
                        self.expect_sym(",")?;
                    }
                }
                return Ok(Value::List(items));
            }
            Tok::Sym("{") => {
                self.pos += 1;
                let mut m = std::collections::BTreeMap::new();
                if !self.accept_sym("}") {
                    loop {
                        let k = self.name()?;
                        self.expect_sym(":")?;
                        m.insert(k, self.literal()?);
                        if self.accept_sym("}") {
                            break;
                        }
                        self.expect_sym(",")?;
                    }
                }
                return Ok(Value::Map(m));
            }
            _ => return Err(self.mismatched("a literal")),
        };
        self.pos += 1;
        Ok(v)
    }

    fn cypher(&mut self) -> PResult<CypherQuery> {
        let mut clauses = Vec::new();
        loop {
            let t = self.peek().clone();
            if t.is_kw("MATCH") {
                self.pos += 1;
                let patterns = self.patterns()?;
                let filter = if self.accept_kw("WHERE") { Some(self.expr()?) } else { None };
                clauses.push(Clause::Match { patterns, filter });
            } else if t.is_kw("CREATE") {
                self.pos += 1;
                clauses.push(Clause::Create(self.patterns()?));
            } else if t.is_kw("DETACH") || t.is_kw("DELETE") {
                let detach = self.accept_kw("DETACH");
                self.expect_kw("DELETE")?;
                let mut exprs = vec![self.expr()?];
                while self.accept_sym(",") {
                    exprs.push(self.expr()?);
                }
                clauses.push(Clause::Delete { detach, exprs });
            } else if t.is_kw("RETURN") {
                self.pos += 1;
                clauses.push(Clause::Return(self.return_body()?));
                break;
            } else {
                break;
            }
        }
        if clauses.is_empty() {
            return Err(self.no_viable());
        }
        Ok(CypherQuery { clauses })
    }

    fn patterns(&mut self) -> PResult<Vec<NodePattern>> {
        let mut out = vec![self.node_pattern()?];
        while self.accept_sym(",") {
            out.push(self.node_pattern()?);
        }
        if self.peek().is_sym("-") || self.peek().is_sym("<-") || self.peek().is_sym("->") {
            // Relationship patterns are outside the emulated subset.
            return Err(self.mismatched("{<EOF>, ';'}"));
        }
        Ok(out)
    }

    fn node_pattern(&mut self) -> PResult<NodePattern> {
        self.expect_sym("(")?;
        let var = match &self.peek().tok {
            Tok::Ident(_) | Tok::Escaped(_) => Some(self.name()?),
            _ => None,
        };
        let mut labels = Vec::new();
        while self.accept_sym(":") {
            labels.push(self.name()?);
        }
        let props = if self.peek().is_sym("{") { self.map_body()? } else { Vec::new() };
        self.expect_sym(")")?;
        Ok(NodePattern { var, labels, props })
    }

    fn map_body(&mut self) -> PResult<Vec<(String, Expr)>> {
        self.expect_sym("{")?;
        let mut items = Vec::new();
        if self.accept_sym("}") {
            return Ok(items);
        }
        loop {
            let k = self.name()?;
            self.expect_sym(":")?;
            items.push((k, self.expr()?));
            if self.accept_sym("}") {
                return Ok(items);
            }
            self.expect_sym(",")?;
        }
    }

    fn return_body(&mut self) -> PResult<Return> {
        let distinct = self.accept_kw("DISTINCT");
        let mut items = vec![self.return_item()?];
        while self.accept_sym(",") {
            items.push(self.return_item()?);
        }
        let mut order_by = Vec::new();
        if self.accept_kw("ORDER") {
            self.expect_kw("BY")?;
            loop {
                let e = self.expr()?;
                let desc = if self.accept_kw("DESC") || self.accept_kw("DESCENDING") {
                    true
                } else {
                    let _ = self.accept_kw("ASC") || self.accept_kw("ASCENDING");
                    false
                };
                order_by.push((e, desc));
                if !self.accept_sym(",") {
                    break;
                }
            }
        }
        let skip = if self.accept_kw("SKIP") { Some(self.expr()?) } else { None };
        let limit = if self.accept_kw("LIMIT") { Some(self.expr()?) } else { None };
        Ok(Return { distinct, items, order_by, skip, limit })
    }

    fn return_item(&mut self) -> PResult<ReturnItem> {
        let start = self.peek().start;
        let expr = self.expr()?;
        let end = self.toks[self.pos.saturating_sub(1)].end;
        let name = if self.accept_kw("AS") {
            self.name()?
        } else {
            self.src.get(start..end).unwrap_or_default().trim().to_string()
        };
        Ok(ReturnItem { expr, name })
    }

    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let e = self.binary_level(0);
        self.depth -= 1;
        e
    }

    fn binary_level(&mut self, level: usize) -> PResult<Expr> {
        // Precedence from loosest to tightest.
        const LEVELS: &[&[(&str, BinOp)]] = &[&[("OR", BinOp::Or)], &[("XOR", BinOp::Xor)], &[("AND", BinOp::And)]];
        if level == LEVELS.len() {
            return self.not_expr();
        }
        let mut lhs = self.binary_level(level + 1)?;
        'outer: loop {
            for (kw, op) in LEVELS[level] {
                if self.accept_kw(kw) {
                    let rhs = self.binary_level(level + 1)?;
                    lhs = Expr::Binary(*op, Box::new(lhs), Box::new(rhs));
                    continue 'outer;
                }
            }
            return Ok(lhs);
        }
    }

    fn not_expr(&mut self) -> PResult<Expr> {
        if self.accept_kw("NOT") {
            self.enter()?;
            let e = self.not_expr();
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> PResult<Expr> {
        let mut lhs = self.additive()?;
        loop {
            let op = match &self.peek().tok {
                Tok::Sym("=") => BinOp::Eq,
                Tok::Sym("<>") | Tok::Sym("!=") => BinOp::Ne,
                Tok::Sym("<") => BinOp::Lt,
                Tok::Sym("<=") => BinOp::Le,
                Tok::Sym(">") => BinOp::Gt,
                Tok::Sym(">=") => BinOp::Ge,
                _ if self.peek().is_kw("IS") => {
                    self.pos += 1;
                    let not = self.accept_kw("NOT");
                    self.expect_kw("NULL")?;
                    lhs = Expr::IsNull(Box::new(lhs), not);
                    continue;
                }
                _ => return Ok(lhs),
            };
            self.pos += 1;
            let rhs = self.additive()?;
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
    }

    fn additive(&mut self) -> PResult<Expr> {
        let mut lhs = self.multiplicative()?;
        loop {
            let op = match &self.peek().tok {
                Tok::Sym("+") => BinOp::Add,
                Tok::Sym("-") => BinOp::Sub,
                _ => return Ok(lhs),
            };
            self.pos += 1;
            let rhs = self.multiplicative()?;
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
    }

    fn multiplicative(&mut self) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        loop {
            let op = match &self.peek().tok {
                Tok::Sym("*") => BinOp::Mul,
                Tok::Sym("/") => BinOp::Div,
                Tok::Sym("%") => BinOp::Mod,
                _ => return Ok(lhs),
            };
            self.pos += 1;
            let rhs = self.unary()?;
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.accept_sym("-") {
            self.enter()?;
            let inner = self.unary();
            self.depth -= 1;
            // Fold negative literals so `-9` is a literal, as in Cypher.
            return Ok(match inner? {
                Expr::Literal(Value::Int(i)) => Expr::Literal(Value::Int(i.wrapping_neg())),
                Expr::Literal(Value::Float(f)) => Expr::Literal(Value::Float(-f)),
                e => Expr::Neg(Box::new(e)),
            });
        }
        if self.accept_sym("+") {
            self.enter()?;
            let inner = self.unary();
            self.depth -= 1;
            return inner;
        }
        self.postfix()
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let mut e = self.atom()?;
        while self.accept_sym(".") {
            let key = self.name()?;
            e = Expr::Prop(Box::new(e), key);
        }
        // A label test on a variable: `n:Label`.
        if matches!(e, Expr::Var(_)) && self.accept_sym(":") {
            let mut labels = vec![self.name()?];
            while self.accept_sym(":") {
                labels.push(self.name()?);
            }
            e = Expr::HasLabels(Box::new(e), labels);
        }
        Ok(e)
    }

    fn atom(&mut self) -> PResult<Expr> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Int(_) | Tok::Float(_) | Tok::Str(_) => Ok(Expr::Literal(self.literal()?)),
            Tok::Param(p) => {
                self.pos += 1;
                Ok(Expr::Param(p.clone()))
            }
            Tok::Sym("(") => {
                self.pos += 1;
                let e = self.expr()?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Sym("[") => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.accept_sym("]") {
                    loop {
                        items.push(self.expr()?);
                        if self.accept_sym("]") {
                            break;
                        }
                        self.expect_sym(",")?;
                    }
                }
                Ok(Expr::List(items))
            }
            Tok::Sym("{") => Ok(Expr::Map(self.map_body()?)),
            Tok::Ident(s) if ["true", "false", "null"].iter().any(|k| s.eq_ignore_ascii_case(k)) => {
                Ok(Expr::Literal(self.literal()?))
            }
            Tok::Ident(s) if self.peek_at(1).is_sym("(") => {
                let name = s.to_ascii_lowercase();
                self.pos += 2;
                if name == "count" && self.accept_sym("*") {
                    self.expect_sym(")")?;
                    return Ok(Expr::CountStar);
                }
                let distinct = self.accept_kw("DISTINCT");
                let mut args = Vec::new();
                if !self.accept_sym(")") {
                    loop {
                        args.push(self.expr()?);
                        if self.accept_sym(")") {
                            break;
                        }
                        self.expect_sym(",")?;
                    }
                }
                Ok(Expr::Call { name, distinct, args })
            }
            Tok::Ident(_) | Tok::Escaped(_) => Ok(Expr::Var(self.name()?)),
            _ => Err(self.no_viable()),
        }
    }
}
