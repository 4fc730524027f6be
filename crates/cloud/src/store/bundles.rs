//! Runs as the console lists them, and the trusted-compute bundles workspaces upload for them.
//!
//! A bundle is stored whole (file name -> base64 of its bytes, in one JSON column: the nine
//! proof files and three signature files are kilobytes) with the verifier's four checks as they
//! came out on upload. The first upload of a run wins: evidence is not replaced, so a second
//! upload is accepted only when it is byte for byte the same bundle (same `digest`).
//!
//! Each workspace has at most one pinned signer (`workspace_signers`, walk-G F3): the key of its
//! first verified bundle (trust on first use), or the one an operator pinned with `lumenflow
//! cloud signer pin`. A bundle records the pin as it stood on arrival, so whether it was signed
//! by another key is a fact of the upload, not of whatever the pin is today.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::{QueryBuilder, Row};

use super::{now_ms, parse_json, AuditEntry, Backend, Store};
use crate::error::{CloudError, CloudResult};

/// One stored bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleRow {
    pub workspace_id: String,
    pub run_id: String,
    /// `sha256:` of the canonical JSON of `files` (what makes two uploads the same bundle).
    pub digest: String,
    /// File name -> base64 (standard alphabet) of its bytes.
    pub files: BTreeMap<String, String>,
    pub total_bytes: i64,
    /// All four checks passed.
    pub passed: bool,
    /// The checks as `[{name, passed, detail}]`.
    pub checks: Value,
    pub signer_key_id: Option<String>,
    /// The workspace's pinned signer when the bundle arrived (`None`: nothing was pinned and
    /// the bundle did not verify, so it pinned nothing).
    pub pinned_signer_key_id: Option<String>,
    /// The audit subject of the uploader.
    pub uploaded_by: String,
    pub uploaded_at_ms: i64,
}

/// A run in the runs list.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub workspace_id: String,
    pub run_id: String,
    pub first_ms: i64,
    pub last_ms: i64,
    /// `Some(passed)` when a bundle was uploaded for the run.
    pub bundle_passed: Option<bool>,
    pub signer_key_id: Option<String>,
    pub pinned_signer_key_id: Option<String>,
}

impl BundleRow {
    /// Signed by a key other than the workspace's pinned signer at upload (walk-G F3).
    pub fn signer_changed(&self) -> bool {
        signer_changed(
            self.pinned_signer_key_id.as_deref(),
            self.signer_key_id.as_deref(),
        )
    }
}

impl RunSummary {
    /// See [`BundleRow::signer_changed`].
    pub fn signer_changed(&self) -> bool {
        signer_changed(
            self.pinned_signer_key_id.as_deref(),
            self.signer_key_id.as_deref(),
        )
    }
}

fn signer_changed(pinned: Option<&str>, signer: Option<&str>) -> bool {
    matches!((pinned, signer), (Some(p), Some(s)) if p != s)
}

/// How a workspace's signer came to be pinned.
pub const PIN_FIRST_USE: &str = "first_use";
/// Pinned by an operator (`lumenflow cloud signer pin`).
pub const PIN_OPERATOR: &str = "operator";

/// A workspace's pinned bundle signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerPin {
    pub workspace_id: String,
    /// `ed25519:<64 hex>`, as a bundle manifest's `signer_key_id`.
    pub key_id: String,
    /// [`PIN_FIRST_USE`] or [`PIN_OPERATOR`].
    pub source: String,
    /// The audit subject that pinned it (the uploader on first use).
    pub pinned_by: String,
    pub pinned_at_ms: i64,
    pub reason: Option<String>,
}

/// The columns of `run_bundles` in the order every query here reads them (a macro, so the
/// statements stay `&'static str` literals).
macro_rules! bundle_columns {
    () => {
        "workspace_id, run_id, digest, files, total_bytes, passed, checks, signer_key_id, \
         uploaded_by, uploaded_at_ms, pinned_signer_key_id"
    };
}

impl Store {
    /// Store a bundle unless the run already has one; returns the stored row (the first one).
    pub async fn put_bundle(&self, b: &BundleRow) -> CloudResult<BundleRow> {
        let files = serde_json::to_string(&b.files)
            .map_err(|e| CloudError::Internal(format!("cannot encode the bundle files: {e}")))?;
        with_pool!(self, pool => {
            sqlx::query(concat!(
                "INSERT INTO run_bundles (",
                bundle_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (workspace_id, run_id) DO NOTHING"
            ))
            .bind(&b.workspace_id)
            .bind(&b.run_id)
            .bind(&b.digest)
            .bind(&files)
            .bind(b.total_bytes)
            .bind(b.passed)
            .bind(b.checks.to_string())
            .bind(b.signer_key_id.as_deref())
            .bind(&b.uploaded_by)
            .bind(b.uploaded_at_ms)
            .bind(b.pinned_signer_key_id.as_deref())
            .execute(pool)
            .await?;
            Ok::<(), CloudError>(())
        })?;
        self.run_bundle(&b.run_id, Some(&b.workspace_id))
            .await?
            .ok_or_else(|| {
                CloudError::Storage(format!(
                    "the bundle of run `{}` vanished after insert",
                    b.run_id
                ))
            })
    }

    /// The bundle of a run (of one workspace when given; else the first workspace's by name).
    pub async fn run_bundle(
        &self,
        run_id: &str,
        workspace_id: Option<&str>,
    ) -> CloudResult<Option<BundleRow>> {
        with_reader!(self, pool => {
            let mut qb = QueryBuilder::new(concat!(
                "SELECT ",
                bundle_columns!(),
                " FROM run_bundles WHERE run_id = "
            ));
            qb.push_bind(run_id);
            if let Some(ws) = workspace_id {
                qb.push(" AND workspace_id = ").push_bind(ws);
            }
            qb.push(" ORDER BY workspace_id LIMIT 1");
            let row = qb.build().fetch_optional(pool).await?;
            let Some(r) = row else { return Ok(None) };
            let files: String = r.try_get(3)?;
            let checks: String = r.try_get(6)?;
            Ok(Some(BundleRow {
                workspace_id: r.try_get(0)?,
                run_id: r.try_get(1)?,
                digest: r.try_get(2)?,
                files: serde_json::from_str(&files).map_err(|e| {
                    CloudError::Storage(format!("stored bundle files of run `{run_id}` are not a map: {e}"))
                })?,
                total_bytes: r.try_get(4)?,
                passed: r.try_get(5)?,
                checks: parse_json(&checks, "bundle checks")?,
                signer_key_id: r.try_get(7)?,
                uploaded_by: r.try_get(8)?,
                uploaded_at_ms: r.try_get(9)?,
                pinned_signer_key_id: r.try_get(10)?,
            }))
        })
    }

    /// The newest `limit` runs (by their last event, sealed receipt or uploaded bundle), of one
    /// workspace or all,
    /// with their bundle's verdict when one was uploaded.
    pub async fn recent_runs(
        &self,
        workspace_id: Option<&str>,
        limit: u32,
    ) -> CloudResult<Vec<RunSummary>> {
        with_reader!(self, pool => {
            let mut qb = QueryBuilder::new(
                "SELECT u.workspace_id, u.run_id, MIN(u.f), MAX(u.l), MAX(b.signer_key_id), \
                 CAST(MIN(CASE WHEN b.passed THEN 1 WHEN b.run_id IS NULL THEN NULL ELSE 0 END) AS BIGINT), \
                 MAX(b.pinned_signer_key_id) FROM (\
                 SELECT workspace_id, run_id, first_ts_ms AS f, last_ts_ms AS l FROM event_runs",
            );
            if let Some(ws) = workspace_id {
                qb.push(" WHERE workspace_id = ").push_bind(ws);
            }
            qb.push(
                " UNION ALL SELECT workspace_id, run_id, sealed_at_ms AS f, sealed_at_ms AS l \
                 FROM receipts WHERE run_id IS NOT NULL",
            );
            if let Some(ws) = workspace_id {
                qb.push(" AND workspace_id = ").push_bind(ws);
            }
            // A run known only by its uploaded bundle is still a run to look at.
            qb.push(
                " UNION ALL SELECT workspace_id, run_id, uploaded_at_ms AS f, uploaded_at_ms AS l \
                 FROM run_bundles",
            );
            if let Some(ws) = workspace_id {
                qb.push(" WHERE workspace_id = ").push_bind(ws);
            }
            qb.push(
                ") u LEFT JOIN run_bundles b ON b.workspace_id = u.workspace_id AND b.run_id = u.run_id \
                 GROUP BY u.workspace_id, u.run_id ORDER BY MAX(u.l) DESC, u.run_id LIMIT ",
            );
            qb.push_bind(i64::from(limit.clamp(1, 1_000)));
            let rows = qb.build().fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    let passed: Option<i64> = r.try_get(5)?;
                    Ok(RunSummary {
                        workspace_id: r.try_get(0)?,
                        run_id: r.try_get(1)?,
                        first_ms: r.try_get(2)?,
                        last_ms: r.try_get(3)?,
                        bundle_passed: passed.map(|p| p == 1),
                        signer_key_id: r.try_get(4)?,
                        pinned_signer_key_id: r.try_get(6)?,
                    })
                })
                .collect()
        })
    }
}

/// `SELECT workspace_id, key_id, source, pinned_by, pinned_at_ms, reason` rows as [`SignerPin`]s.
macro_rules! signer_pin {
    ($r:expr) => {{
        let r = $r;
        SignerPin {
            workspace_id: r.try_get(0)?,
            key_id: r.try_get(1)?,
            source: r.try_get(2)?,
            pinned_by: r.try_get(3)?,
            pinned_at_ms: r.try_get(4)?,
            reason: r.try_get(5)?,
        }
    }};
}

impl Store {
    /// The workspace's pinned bundle signer, if any.
    pub async fn workspace_signer(&self, workspace_id: &str) -> CloudResult<Option<SignerPin>> {
        with_reader!(self, pool => {
            let row = sqlx::query(
                "SELECT workspace_id, key_id, source, pinned_by, pinned_at_ms, reason \
                 FROM workspace_signers WHERE workspace_id = $1",
            )
            .bind(workspace_id)
            .fetch_optional(pool)
            .await?;
            Ok(match row {
                Some(r) => Some(signer_pin!(&r)),
                None => None,
            })
        })
    }

    /// Every pinned signer (of one workspace when given), by workspace.
    pub async fn workspace_signers(
        &self,
        workspace_id: Option<&str>,
    ) -> CloudResult<Vec<SignerPin>> {
        with_reader!(self, pool => {
            let mut qb = QueryBuilder::new(
                "SELECT workspace_id, key_id, source, pinned_by, pinned_at_ms, reason \
                 FROM workspace_signers",
            );
            if let Some(ws) = workspace_id {
                qb.push(" WHERE workspace_id = ").push_bind(ws);
            }
            qb.push(" ORDER BY workspace_id");
            let rows = qb.build().fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(signer_pin!(r));
            }
            Ok(out)
        })
    }

    /// Pin `key_id` for the workspace unless a signer is pinned already (trust on first use);
    /// returns the pin that holds afterwards. One statement, so two first uploads racing with
    /// different keys pin exactly one of them.
    pub async fn pin_signer_first_use(
        &self,
        workspace_id: &str,
        key_id: &str,
        pinned_by: &str,
    ) -> CloudResult<SignerPin> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO workspace_signers \
                 (workspace_id, key_id, source, pinned_by, pinned_at_ms, reason) \
                 VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT (workspace_id) DO NOTHING",
            )
            .bind(workspace_id)
            .bind(key_id)
            .bind(PIN_FIRST_USE)
            .bind(pinned_by)
            .bind(now_ms())
            .execute(pool)
            .await?;
            Ok::<(), CloudError>(())
        })?;
        self.workspace_signer(workspace_id).await?.ok_or_else(|| {
            CloudError::Storage(format!(
                "the pinned signer of workspace `{workspace_id}` vanished after insert"
            ))
        })
    }

    /// An operator pins `key_id` for the workspace, replacing any pin; returns the previous one.
    /// The pin and its audit line are written in one transaction, so no pin moves unrecorded.
    pub async fn pin_signer(
        &self,
        pin: &SignerPin,
        audit: &AuditEntry,
    ) -> CloudResult<Option<SignerPin>> {
        let previous = self.workspace_signer(&pin.workspace_id).await?;
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO workspace_signers \
                 (workspace_id, key_id, source, pinned_by, pinned_at_ms, reason) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workspace_id) DO UPDATE SET \
                 key_id = excluded.key_id, source = excluded.source, \
                 pinned_by = excluded.pinned_by, pinned_at_ms = excluded.pinned_at_ms, \
                 reason = excluded.reason",
            )
            .bind(&pin.workspace_id)
            .bind(&pin.key_id)
            .bind(&pin.source)
            .bind(&pin.pinned_by)
            .bind(pin.pinned_at_ms)
            .bind(pin.reason.as_deref())
            .execute(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit);
            tx.commit().await?;
            Ok::<(), CloudError>(())
        })?;
        Ok(previous)
    }
}
