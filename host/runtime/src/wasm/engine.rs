//! The wasmtime engine shared by every plugin of a host process: its
//! settings, the epoch ticker that enforces deadlines, and the compiled-code
//! cache.

use std::path::Path;
use std::time::Duration;

use wasmtime::{Cache, CacheConfig, Config, Engine};

use crate::PluginError;

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A wasmtime engine configured for source plugins, with its epoch ticker.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
}

impl PluginEngine {
    /// Builds the engine. `cache_dir` keeps compiled plugins between runs
    /// (created with mode 0700); `None` compiles every time.
    pub fn new(cache_dir: Option<&Path>) -> Result<PluginEngine, PluginError> {
        let mut cfg = Config::new();
        cfg.wasm_component_model(true);
        // The 0.1 world uses no async ABI (the `component-model-async` feature
        // is not even compiled in); without concurrency support calls are
        // several times cheaper.
        cfg.concurrency_support(false);
        cfg.epoch_interruption(true);
        cfg.max_wasm_stack(512 << 10);
        if let Some(dir) = cache_dir {
            create_private_dir(dir).map_err(|e| {
                PluginError::Load(format!(
                    "cannot create the compile cache {}: {e}; check the state folder's permissions",
                    dir.display()
                ))
            })?;
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            let cache =
                Cache::new(cache).map_err(|e| PluginError::Load(format!("compile cache: {e}")))?;
            cfg.cache(Some(cache));
        }
        let engine = Engine::new(&cfg)
            .map_err(|e| PluginError::Load(format!("cannot start wasmtime: {e}")))?;
        spawn_epoch_ticker(&engine);
        Ok(PluginEngine { engine })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Deadline in epoch ticks for a time limit in seconds.
    pub fn ticks_for(secs: u32) -> u64 {
        (u64::from(secs) * 1000).div_ceil(EPOCH_TICK.as_millis() as u64)
    }
}

/// A plain thread, not an async task: it must keep ticking even when every
/// worker is busy running a plugin. It ends once the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
