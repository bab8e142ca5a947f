//! Several runners on one run: each instance is claimed by one of them through a lease it
//! renews, and the run's concurrency cap is counted across all of them, in the database.
//!
//! Every decision is taken in a transaction under the run's claim lock
//! (`pg_advisory_xact_lock`), and every time is the server's (`now()`), so that runners on
//! machines whose clocks disagree still agree on when a lease runs out.

use std::time::Duration;

use super::{PgStore, RunLock, lock_key, try_lock};
use crate::state::record::InstanceRecord;
use crate::state::store::{Claim, Followed, StateError, Write};

/// The states whose agent works (`InstanceState::has_live_agent`), as records spell them.
const LIVE: &str = "('launching', 'running', 'following_up')";

/// Serialises the claims of one run, apart from its run lock.
fn claim_key(run: &str) -> i64 {
    lock_key(&format!("{run} claims"))
}

/// A transaction whose commit does not wait for the disk. For what a server crash may lose
/// safely: a lost claim fails the first write it fences (so nothing is launched on it), a
/// lost letting go only delays a takeover, a lost token lets one call through early once.
/// Instance writes and lease renewals always wait for the disk.
fn unsynced(client: &mut postgres::Client) -> Result<postgres::Transaction<'_>, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.batch_execute("SET LOCAL synchronous_commit TO OFF")?;
    Ok(tx)
}

impl PgStore {
    /// Joins `run` as one of its runners: its lock is shared with the other runners (and
    /// refused while a lone apply holds it), and its instances are claimed one by one
    /// through leases of `lease`.
    pub fn join_run(&self, run: &str, lease: Duration) -> Result<(), StateError> {
        self.lease.set(Some(lease));
        self.take_run(run, true, |client| {
            // The first runner of an apply clears a cancel request the runners of an
            // earlier one all saw (they keep it; see `take_cancel_request`).
            let alone = RunLock {
                key: lock_key(run),
                shared: false,
            };
            if try_lock(client, alone)? {
                client.execute(
                    "DELETE FROM orchestrate.cancel_requests WHERE run = $1",
                    &[&run],
                )?;
                client.execute("SELECT pg_advisory_unlock($1)", &[&alone.key])?;
            }
            Ok(())
        })
    }

    fn lease_seconds(&self) -> f64 {
        self.lease
            .get()
            .unwrap_or(Duration::from_secs(30))
            .as_secs_f64()
    }

    /// Claims instances `keys` of `run`, in order, in one transaction: each is taken when
    /// no other runner's lease holds it unexpired and, unless its agent already works (and
    /// so already counts), fewer than `cap` other instances of the run work or are claimed.
    /// Returns, for each, the claim and its record as the database has it, which the
    /// claimer continues from.
    pub fn claim(
        &self,
        run: &str,
        keys: &[String],
        cap: u32,
    ) -> Result<Vec<(Claim, Option<InstanceRecord>)>, StateError> {
        let lease = self.lease_seconds();
        let found = self.with(|client| {
            let pg = |e: postgres::Error| self.pg(&e);
            let mut tx = unsynced(client).map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&claim_key(run)])
                .map_err(pg)?;
            // Per key: its record, whether its agent works, another runner's lease and
            // whether it is unexpired, and whether this runner's own lease already counts.
            let rows = tx
                .query(
                    &format!(
                        "SELECT i.record, coalesce(i.record->>'state' IN {LIVE}, false),
                                o.runner, o.expires_at > now(),
                                m.key IS NOT NULL
                         FROM unnest($2::text[]) WITH ORDINALITY AS k(key, n)
                         LEFT JOIN orchestrate.instances i ON i.run = $1 AND i.key = k.key
                         LEFT JOIN orchestrate.leases o
                             ON o.run = $1 AND o.key = k.key AND o.runner <> $3
                         LEFT JOIN orchestrate.leases m
                             ON m.run = $1 AND m.key = k.key AND m.runner = $3
                                AND m.expires_at > now()
                         ORDER BY k.n"
                    ),
                    &[&run, &keys, &self.runner],
                )
                .map_err(pg)?;
            // Read through indexes: the working instances (`instances_working`), and the
            // run's leases of instances that do not work.
            let mut taken: i64 = tx
                .query_one(
                    &format!(
                        "SELECT (SELECT count(*) FROM orchestrate.instances
                                 WHERE run = $1 AND record->>'state' IN {LIVE})
                              + (SELECT count(*) FROM orchestrate.leases l
                                 WHERE l.run = $1 AND l.expires_at > now()
                                   AND NOT EXISTS (
                                       SELECT 1 FROM orchestrate.instances i
                                       WHERE i.run = l.run AND i.key = l.key
                                         AND i.record->>'state' IN {LIVE}))"
                    ),
                    &[&run],
                )
                .map_err(pg)?
                .get(0);
            let mut claims = Vec::with_capacity(keys.len());
            let mut granted = Vec::new();
            for (key, row) in keys.iter().zip(rows) {
                let record: Option<serde_json::Value> = row.get(0);
                let live: bool = row.get(1);
                let other: Option<String> = row.get(2);
                let unexpired: Option<bool> = row.get(3);
                let counted: bool = row.get(4);
                let from = match (other, unexpired) {
                    (Some(holder), Some(true)) => {
                        claims.push((Claim::Held(holder), record));
                        continue;
                    }
                    (expired, _) => expired,
                };
                if !live && !counted {
                    if taken >= i64::from(cap) {
                        claims.push((Claim::Full, record));
                        continue;
                    }
                    taken += 1;
                }
                granted.push(key.as_str());
                claims.push((Claim::Mine { from }, record));
            }
            if !granted.is_empty() {
                tx.execute(
                    "INSERT INTO orchestrate.leases (run, key, runner, expires_at)
                     SELECT $1, key, $3, now() + $4 * interval '1 second'
                     FROM unnest($2::text[]) AS k(key)
                     ON CONFLICT (run, key) DO UPDATE
                         SET runner = excluded.runner, expires_at = excluded.expires_at",
                    &[&run, &granted, &self.runner, &lease],
                )
                .map_err(pg)?;
            }
            tx.commit().map_err(pg)?;
            Ok(claims)
        })?;
        found
            .into_iter()
            .zip(keys)
            .map(|((claim, record), key)| {
                let record = record
                    .map(|value| self.decode(&format!("{run}/{key}"), value))
                    .transpose()?;
                Ok((claim, record))
            })
            .collect()
    }

    /// Every instance of `run`: whether its agent works, who holds its lease unexpired,
    /// and its record where its state is not the one in `known` (key, state), so that a
    /// runner reading the run every second moves only what changed.
    pub fn followed(
        &self,
        run: &str,
        known: &[(String, String)],
    ) -> Result<Vec<Followed>, StateError> {
        let (keys, states): (Vec<&str>, Vec<&str>) =
            known.iter().map(|(k, s)| (k.as_str(), s.as_str())).unzip();
        let rows = self.query(
            &format!(
                "SELECT i.key, i.record->>'state' IN {LIVE}, l.runner,
                        CASE WHEN i.record->>'state' IS DISTINCT FROM k.state THEN i.record END
                 FROM orchestrate.instances i
                 LEFT JOIN orchestrate.leases l
                     ON l.run = i.run AND l.key = i.key AND l.expires_at > now()
                 LEFT JOIN unnest($2::text[], $3::text[]) AS k(key, state) ON k.key = i.key
                 WHERE i.run = $1"
            ),
            &[&run, &keys, &states],
        )?;
        rows.into_iter()
            .map(|row| {
                let key: String = row.get(0);
                let holder: Option<&str> = row.get(2);
                let changed = row
                    .get::<_, Option<serde_json::Value>>(3)
                    .map(|value| self.decode(&format!("{run}/{key}"), value))
                    .transpose()?;
                Ok(Followed {
                    working: row.get::<_, Option<bool>>(1).unwrap_or(false),
                    holder: holder.map(|h| h == self.runner),
                    changed,
                    key,
                })
            })
            .collect()
    }

    /// Renews every lease this runner holds, for a whole lease from now.
    pub fn renew_leases(&self) -> Result<u64, StateError> {
        let lease = self.lease_seconds();
        self.with(|client| {
            client
                .execute(
                    "UPDATE orchestrate.leases SET expires_at = now() + $2 * interval '1 second'
                     WHERE runner = $1",
                    &[&self.runner, &lease],
                )
                .map_err(|e| self.pg(&e))
        })
    }

    /// Lets go of this runner's lease of `key` (see [`crate::state::Store::let_go`]).
    pub fn let_go(&self, run: &str, key: &str) -> Result<(), StateError> {
        self.with(|client| {
            let pg = |e: postgres::Error| self.pg(&e);
            let mut tx = unsynced(client).map_err(pg)?;
            tx.execute(
                "UPDATE orchestrate.leases SET expires_at = now()
                 WHERE run = $1 AND key = $2 AND runner = $3",
                &[&run, &key, &self.runner],
            )
            .map_err(pg)?;
            tx.commit().map_err(pg)
        })
    }

    /// Takes one call from the token bucket `name` that every process on the database
    /// shares, refilled at `per_second` up to `burst`; when it holds none, how long until
    /// it does.
    pub fn take_token(
        &self,
        name: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Result<(), Duration>, StateError> {
        let burst = f64::from(burst.max(1));
        self.with(|client| {
            let pg = |e: postgres::Error| self.pg(&e);
            let mut tx = unsynced(client).map_err(pg)?;
            tx.execute(
                "INSERT INTO orchestrate.buckets (name, tokens, at) VALUES ($1, $2, now())
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &burst],
            )
            .map_err(pg)?;
            let held: f64 = tx
                .query_one(
                    "SELECT least($2, tokens + extract(epoch FROM now() - at)::float8 * $3)
                     FROM orchestrate.buckets WHERE name = $1 FOR UPDATE",
                    &[&name, &burst, &per_second],
                )
                .map_err(pg)?
                .get(0);
            let took = held >= 1.0;
            let left = if took { held - 1.0 } else { held };
            tx.execute(
                "UPDATE orchestrate.buckets SET tokens = $2, at = now() WHERE name = $1",
                &[&name, &left],
            )
            .map_err(pg)?;
            tx.commit().map_err(pg)?;
            Ok(if took {
                Ok(())
            } else {
                Err(Duration::from_secs_f64((1.0 - held) / per_second))
            })
        })
    }

    /// Refuses `writes` unless this runner holds every lease they are fenced by
    /// ([`Write::Fence`]) with half of it left. The rows stay locked (`FOR SHARE`) until
    /// the transaction ends, so no claim takes one over before the writes commit.
    pub(super) fn check_fences(
        &self,
        tx: &mut postgres::Transaction<'_>,
        writes: &[Write],
    ) -> Result<(), StateError> {
        let (runs, keys): (Vec<&str>, Vec<&str>) = writes
            .iter()
            .filter_map(|w| match w {
                Write::Fence(run, key) => Some((run.as_str(), key.as_str())),
                _ => None,
            })
            .unzip();
        if runs.is_empty() {
            return Ok(());
        }
        let half = self.lease_seconds() / 2.0;
        let held: Vec<(String, String)> = tx
            .query(
                "SELECT l.run, l.key FROM orchestrate.leases l
                 JOIN unnest($1::text[], $2::text[]) AS f(run, key)
                   ON l.run = f.run AND l.key = f.key
                 WHERE l.runner = $3 AND l.expires_at > now() + $4 * interval '1 second'
                 FOR SHARE OF l",
                &[&runs, &keys, &self.runner, &half],
            )
            .map_err(|e| self.pg(&e))?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        match runs
            .into_iter()
            .zip(keys)
            .find(|(run, key)| !held.iter().any(|(r, k)| r == run && k == key))
        {
            Some((run, key)) => Err(StateError::LeaseLost {
                run: run.to_owned(),
                key: key.to_owned(),
            }),
            None => Ok(()),
        }
    }
}
