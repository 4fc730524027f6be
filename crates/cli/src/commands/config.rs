//! `lumenflow config get|set`.

use lumenflow_kernel::config::{self, ConfigError};
use lumenflow_kernel::loader::PackLoader;
use lumenflow_kernel::workspace::ReplaceError;
use lumenflow_kernel::yaml::emit::to_yaml_string;
use serde_json::{json, Value};

use super::Context;
use crate::output::{print_ok, warn, CliError};

/// How often `config set` redoes its edit when workspace.yaml changed under its write.
const SET_ATTEMPTS: usize = 10;

fn err(e: ConfigError) -> CliError {
    match e {
        ConfigError::Workspace(d) => CliError::from(d),
        other => CliError::new(other.code(), other.to_string()),
    }
}

pub fn get(ctx: &Context, key: &str) -> Result<(), CliError> {
    let doc = ctx.workspace()?;
    let builtin = lumenflow_packs::builtin_packs();
    let loader = PackLoader::for_workspace(&doc, builtin);
    let owners = config::config_owners(&doc, &loader);
    let value = config::get(&doc, key, &owners).map_err(err)?;
    let human = match &value {
        None => format!("Key \"{key}\" is not set"),
        Some(Value::String(s)) => s.clone(),
        Some(v @ (Value::Object(_) | Value::Array(_))) => to_yaml_string(v).trim_end().to_string(),
        Some(v) => v.to_string(),
    };
    print_ok(
        ctx.json,
        &json!({"key": key, "set": value.is_some(), "value": value}),
        &human,
    );
    Ok(())
}

pub fn set(ctx: &Context, key: &str, raw: &str) -> Result<(), CliError> {
    // Another command may write workspace.yaml between this one's read and write; the write
    // then refuses (WORKSPACE_CHANGED) and the edit is redone on what the file holds now.
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        let doc = ctx.workspace()?;
        let builtin = lumenflow_packs::builtin_packs();
        let loader = PackLoader::for_workspace(&doc, builtin);
        let owners = config::config_owners(&doc, &loader);
        match config::set(&doc, key, raw, &owners) {
            Err(ConfigError::Replace(ReplaceError::Changed { .. })) if attempt < SET_ATTEMPTS => {}
            other => break other.map_err(err)?,
        }
    };
    for w in &outcome.warnings {
        warn(ctx.json, w);
    }
    let shown = match &outcome.value {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    print_ok(
        ctx.json,
        &json!({
            "key": outcome.key,
            "value": outcome.value,
            "previous": outcome.previous,
            "preserved_layout": outcome.preserved_layout,
            "warnings": outcome.warnings,
        }),
        &format!("Set {key} = {shown}"),
    );
    Ok(())
}
