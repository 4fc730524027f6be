//! Runs as the console lists them, and the trusted-compute bundles workspaces upload for them.
//!
//! A bundle is stored whole (file name -> base64 of its bytes, in one JSON column: the nine
//! proof files and three signature files are kilobytes) with the verifier's four checks as they
//! came out on upload. The first upload of a run wins: evidence is not replaced, so a second
//! upload is accepted only when it is byte for byte the same bundle (same `digest`).

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::{QueryBuilder, Row};

use super::{parse_json, Backend, Store};
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
}

/// The columns of `run_bundles` in the order every query here reads them (a macro, so the
/// statements stay `&'static str` literals).
macro_rules! bundle_columns {
    () => {
        "workspace_id, run_id, digest, files, total_bytes, passed, checks, signer_key_id, \
         uploaded_by, uploaded_at_ms"
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
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
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
                 CAST(MIN(CASE WHEN b.passed THEN 1 WHEN b.run_id IS NULL THEN NULL ELSE 0 END) AS BIGINT) FROM (\
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
                    })
                })
                .collect()
        })
    }
}
