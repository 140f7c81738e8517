//! A small pool of PostgreSQL connections, each with its own cache of prepared statements.
//!
//! The sync `postgres` client runs one connection per `Client`; the server calls the store from
//! many blocking threads at once, so it needs several. A connection is taken for one store call
//! (one transaction) and given back after; one that broke is dropped instead, and the pool opens
//! a new one when asked. Statements are prepared once per connection: a statement run by its
//! text alone costs a second round trip to prepare it every time.

use super::{PgError, Result};
use crate::store::StoreError;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Row, Statement};
use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long a caller waits for a free connection before it gives up.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct Pool {
    config: Config,
    max: usize,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<Conn>,
    /// Connections open, idle or lent out.
    open: usize,
}

impl Pool {
    pub(super) fn new(config: Config, max: usize) -> Self {
        Self {
            config,
            max: max.max(1),
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a list and a count, each updated in one step: sound after a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection, a new one when fewer than `max` are open, or else the first one given
    /// back.
    pub(super) fn get(&self) -> Result<Pooled<'_>> {
        let mut state = self.state();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(Pooled {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match connect(&self.config) {
                    Ok(client) => Ok(Pooled {
                        pool: self,
                        conn: Some(Conn {
                            client,
                            statements: HashMap::new(),
                            broken: false,
                        }),
                    }),
                    Err(e) => {
                        self.state().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let (next, timeout) = self
                .freed
                .wait_timeout(state, CHECKOUT_TIMEOUT)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            if timeout.timed_out() && state.idle.is_empty() && state.open >= self.max {
                return Err(PgError::Busy {
                    connections: self.max,
                    waited: CHECKOUT_TIMEOUT,
                }
                .into());
            }
        }
    }

    /// Closes the idle connections: after one connection found the server gone (a restart, a
    /// failover), the others are most likely dead too.
    pub(super) fn discard_idle(&self) {
        let idle = {
            let mut state = self.state();
            let idle = std::mem::take(&mut state.idle);
            state.open -= idle.len();
            idle
        };
        self.freed.notify_all();
        close_off_runtime(idle);
    }

    fn give_back(&self, conn: Conn) {
        let mut state = self.state();
        if conn.broken || conn.client.is_closed() {
            state.open -= 1;
            drop(state);
            close_off_runtime(vec![conn]);
        } else {
            state.idle.push(conn);
            drop(state);
        }
        self.freed.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        close_off_runtime(std::mem::take(&mut self.state().idle));
    }
}

/// Opens a connection. Only TCP or unix sockets without TLS: see the module docs of
/// [`super::PgStore`].
pub(super) fn connect(config: &Config) -> Result<Client> {
    config.connect(NoTls).map_err(StoreError::from)
}

/// Closes connections on a thread of their own when called on an async runtime: closing a sync
/// client blocks on its own runtime, which must not start inside another one (a server dropping
/// its last handle to the store).
pub(super) fn close_off_runtime<T: Send + 'static>(connections: Vec<T>) {
    if connections.is_empty() {
        return;
    }
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::spawn(move || drop(connections));
    } else {
        drop(connections);
    }
}

/// One connection and the statements prepared on it.
pub(super) struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
    /// Set when the server said it is ending the session: closed instead of given back.
    broken: bool,
}

/// A connection lent out by the pool; given back when dropped.
pub(super) struct Pooled<'p> {
    pool: &'p Pool,
    conn: Option<Conn>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        // Only `drop` takes the connection out.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}

/// Runs statements by their text, preparing each once per connection. Implemented by a bare
/// connection (each statement its own transaction) and by [`Tx`].
pub(super) trait Queries {
    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>>;
    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64>;

    /// The first row, if any.
    fn query_opt(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

fn prepared(
    statements: &mut HashMap<String, Statement>,
    sql: &str,
    prepare: impl FnOnce(&str) -> std::result::Result<Statement, postgres::Error>,
) -> Result<Statement> {
    if let Some(statement) = statements.get(sql) {
        return Ok(statement.clone());
    }
    let statement = prepare(sql)?;
    statements.insert(sql.to_string(), statement.clone());
    Ok(statement)
}

impl Queries for Conn {
    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let statement = prepared(&mut self.statements, sql, |s| self.client.prepare(s))?;
        Ok(self.client.query(&statement, params)?)
    }

    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let statement = prepared(&mut self.statements, sql, |s| self.client.prepare(s))?;
        Ok(self.client.execute(&statement, params)?)
    }
}

impl Pooled<'_> {
    pub(super) fn conn(&mut self) -> &mut Conn {
        self
    }
}

impl Conn {
    /// Closes the connection when it is given back.
    pub(super) fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// True once the client has seen the connection end: the server rolled back whatever
    /// transaction was open on it.
    pub(super) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Starts a transaction (PostgreSQL's default READ COMMITTED).
    pub(super) fn transaction(&mut self) -> Result<Tx<'_>> {
        Ok(Tx {
            tx: self.client.transaction()?,
            statements: &mut self.statements,
        })
    }
}

/// A transaction on a pooled connection; rolled back when dropped without [`Tx::commit`].
pub(super) struct Tx<'c> {
    tx: postgres::Transaction<'c>,
    statements: &'c mut HashMap<String, Statement>,
}

impl Tx<'_> {
    pub(super) fn commit(self) -> Result<()> {
        Ok(self.tx.commit()?)
    }

    pub(super) fn batch_execute(&mut self, sql: &str) -> Result<()> {
        Ok(self.tx.batch_execute(sql)?)
    }
}

impl Queries for Tx<'_> {
    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let statement = prepared(self.statements, sql, |s| self.tx.prepare(s))?;
        Ok(self.tx.query(&statement, params)?)
    }

    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let statement = prepared(self.statements, sql, |s| self.tx.prepare(s))?;
        Ok(self.tx.execute(&statement, params)?)
    }
}
