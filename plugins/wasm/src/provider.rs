//! The WASM runtime as the engine finds it: a binding `NAME.wasm::EXPORT` names the export
//! of plugin `NAME` that its manifest declares for the binding's point; each call hands the
//! plugin the hook contract's JSON and takes back the JSON core checks against the point.

use std::sync::Arc;

use crmkit_core::hooks::{CallLimits, Fault, Handler, HandlerProvider, HookBinding, HookInput, Reply};

use crate::host::PluginHost;

/// The runtime name bindings use for WASM plugins.
pub const RUNTIME: &str = "wasm";

/// A hook handler that is a plugin's export.
pub struct PluginHandler {
    host: Arc<PluginHost>,
    plugin: String,
    export: String,
    limits: CallLimits,
}

impl Handler for PluginHandler {
    fn call(&self, input: &HookInput<'_>) -> Result<Reply, Fault> {
        let json = serde_json::to_vec(&input.to_wire()).map_err(|e| Fault(format!("the hook's input: {e}")))?;
        self.host
            .call_at(input.now, &self.plugin, &self.export, &json, Some(input.view), self.limits)
            .map(Reply::Json)
            .map_err(|e| Fault(e.to_string()))
    }
}

/// The handlers of the plugins of `host`.
pub struct WasmProvider {
    host: Arc<PluginHost>,
}

impl WasmProvider {
    pub fn new(host: Arc<PluginHost>) -> WasmProvider {
        WasmProvider { host }
    }
}

/// `NAME.wasm::EXPORT` as its plugin and export.
pub fn split_handler(name: &str) -> Option<(&str, &str)> {
    let (file, export) = name.rsplit_once("::")?;
    let plugin = file.strip_suffix(".wasm")?;
    (!plugin.is_empty() && !export.is_empty() && !plugin.contains(['/', '\\'])).then_some((plugin, export))
}

impl HandlerProvider for WasmProvider {
    fn runtime(&self) -> &str {
        RUNTIME
    }

    fn handler(&self, binding: &HookBinding) -> Result<Arc<dyn Handler>, String> {
        let (plugin, export) = split_handler(&binding.handler)
            .ok_or("a plugin's export is named NAME.wasm::EXPORT, NAME the plugin's folder in the plugins folder")?;
        let p = self.host.plugin(plugin).map_err(|e| e.to_string())?;
        match p.manifest.hooks.get(&binding.point) {
            Some(e) if e == export => {}
            declared => {
                return Err(format!(
                    "plugin {plugin} does not declare export {export} for {} in its plugin.toml ({})",
                    binding.point,
                    match declared {
                        Some(e) => format!("it declares {e} for it"),
                        None => "it declares no export for this point".to_string(),
                    }
                ))
            }
        }
        let settings = self.host.settings();
        if let Some(t) = binding.limits.timeout_ms.filter(|t| *t > settings.max_timeout_ms) {
            return Err(format!(
                "timeout_ms = {t} is above runtimes.wasm.max_timeout_ms ({})",
                settings.max_timeout_ms
            ));
        }
        if binding.limits.max_operations.is_some() && settings.fuel.is_none() {
            return Err("max_operations counts a plugin's fuel, which is off here: set runtimes.wasm.fuel".into());
        }
        Ok(Arc::new(PluginHandler {
            host: self.host.clone(),
            plugin: plugin.to_string(),
            export: export.to_string(),
            limits: binding.limits,
        }))
    }
}
