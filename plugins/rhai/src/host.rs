//! The script host: one configured engine, the compiled scripts of an installation, and
//! the calls of hook handlers into them under their limits.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use crate::settings::RhaiSettings;
use crmkit_core::hooks::{CallLimits, Fault, Handler, HandlerProvider, HookBinding, HookInput, Reply, View};
use rhai::module_resolvers::ModuleResolver;
use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, Module, Position, Scope, Shared, AST};

/// A script that does not compile, a binding that does not fit, or a call that failed:
/// where (file, line, column, function) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    /// The file, relative to `scripts/`.
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The function called, for errors of a call.
    pub function: Option<String>,
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scripts/{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if let Some(func) = &self.function {
            write!(f, ": in {func}()")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ScriptError {}

impl ScriptError {
    fn at(file: &str, pos: Position, function: Option<&str>, message: impl Into<String>) -> ScriptError {
        ScriptError {
            file: file.to_string(),
            line: pos.line(),
            column: pos.position(),
            function: function.map(str::to_string),
            message: message.into(),
        }
    }
}

/// The budget of the call running on this thread: checked on every operation.
#[derive(Clone, Copy)]
struct Budget {
    deadline: Option<Instant>,
    max_operations: u64,
    timeout_ms: u64,
    /// Whether the call ends when the program stops (a report).
    stoppable: bool,
}

thread_local! {
    static BUDGET: Cell<Budget> = const { Cell::new(Budget { deadline: None, max_operations: u64::MAX, timeout_ms: 0, stoppable: false }) };
    /// Operations of the call on this thread so far. Counted here rather than taken from the
    /// engine: a function pointer called back from native code (`each_deal(|d| …)`) runs on a
    /// copy of the engine's state whose count starts over each time, and a report calling back
    /// a million times must still meet its limits.
    static TICKS: Cell<u64> = const { Cell::new(0) };
    /// The budget's `max_operations`, apart: the one limit looked at on every operation.
    static LIMIT: Cell<u64> = const { Cell::new(u64::MAX) };
}

/// Why a call was stopped, as the progress callback tells the engine.
const OUT_OF_TIME: &str = "time";
const OUT_OF_OPERATIONS: &str = "operations";
const STOPPING: &str = "stopping";

struct Compiled {
    ast: Arc<AST>,
    modified: Option<SystemTime>,
    /// Whether the script may read the store (it calls a store function or imports).
    reads_store: bool,
}

/// A script file's state (see [`ScriptHost::status`]).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScriptStatus {
    /// The file, relative to `scripts/`.
    pub file: String,
    /// Why the file as it is now does not compile (`None`: it compiles).
    pub error: Option<String>,
    /// Whether a compiled version is loaded (the last one that compiled).
    pub in_use: bool,
    /// The functions it defines, as `name/arity`.
    pub functions: Vec<String>,
}

/// One installation's scripts and the engine that runs them.
pub struct ScriptHost {
    engine: Engine,
    /// The same engine stepping through every statement: a call stopped by a limit runs again
    /// on it to find the file, function and line where it was stopped (the engine reports
    /// limits without a place).
    tracer: Engine,
    dir: PathBuf,
    limits: RhaiSettings,
    scripts: RwLock<BTreeMap<String, Compiled>>,
    /// The modules imports evaluated (shared with the engine's resolver).
    modules: Arc<RwLock<BTreeMap<PathBuf, Shared<Module>>>>,
    /// How often calls look for changed files (`None`: never; [`ScriptHost::reload_changed`]
    /// is then called by the embedding program).
    watch: Option<std::time::Duration>,
    /// When files were last looked at.
    looked: std::sync::Mutex<Option<Instant>>,
    /// Set when the program stops: running calls end at their next operation.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl fmt::Debug for ScriptHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptHost").field("dir", &self.dir).field("limits", &self.limits).finish()
    }
}

/// `import` from `scripts/` only, or not at all.
struct ScriptsOnly {
    dir: Option<PathBuf>,
    /// Modules already evaluated, by file: a module's top level runs once, not per call.
    modules: Arc<RwLock<BTreeMap<PathBuf, Shared<Module>>>>,
}

thread_local! {
    /// The files this thread is importing, outermost first: an import of one of them is a
    /// cycle.
    static IMPORTING: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl ModuleResolver for ScriptsOnly {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let refuse = |m: String| -> Box<EvalAltResult> { EvalAltResult::ErrorRuntime(m.into(), pos).into() };
        let Some(dir) = &self.dir else {
            return Err(refuse(format!(
                "import \"{path}\": imports are off in this installation (runtimes.rhai.imports)"
            )));
        };
        let outside = || {
            refuse(format!("import \"{path}\": only scripts inside the installation's scripts/ folder can be imported"))
        };
        let relative = Path::new(path);
        if relative.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(outside());
        }
        let file = dir.join(format!("{path}.rhai"));
        if !file.is_file() {
            return Err(refuse(format!("import \"{path}\": there is no scripts/{path}.rhai")));
        }
        let inside = file.canonicalize().ok().filter(|f| f.starts_with(dir));
        let Some(file) = inside else { return Err(outside()) };
        if let Some(m) = self.modules.read().unwrap_or_else(|p| p.into_inner()).get(&file) {
            return Ok(m.clone());
        }
        let name = |f: &PathBuf| f.strip_prefix(dir).unwrap_or(f).display().to_string();
        let cycle = IMPORTING.with(|stack| {
            let stack = stack.borrow();
            stack.iter().position(|f| *f == file).map(|at| {
                let mut chain: Vec<String> = stack[at..].iter().map(name).collect();
                chain.push(name(&file));
                chain.join(" → ")
            })
        });
        if let Some(chain) = cycle {
            return Err(refuse(format!("import cycle: {chain}")));
        }
        IMPORTING.with(|stack| stack.borrow_mut().push(file.clone()));
        let module = engine
            .compile_file(file.clone())
            .and_then(|mut ast| {
                ast.set_source(name(&file));
                Module::eval_ast_as_new(Scope::new(), &ast, engine)
            })
            .map(Shared::new);
        IMPORTING.with(|stack| stack.borrow_mut().pop());
        let module = module?;
        self.modules.write().unwrap_or_else(|p| p.into_inner()).insert(file, module.clone());
        Ok(module)
    }
}

/// An engine under `limits` with the CRM API, importing from `dir` (when imports are on).
fn configured(
    limits: &RhaiSettings,
    dir: &Path,
    modules: &Arc<RwLock<BTreeMap<PathBuf, Shared<Module>>>>,
    stopping: &Arc<std::sync::atomic::AtomicBool>,
) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_call_levels(limits.max_call_depth);
    engine.set_max_expr_depths(limits.max_expr_depth, (limits.max_expr_depth / 2).max(1));
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    engine.set_max_modules(64);
    engine.disable_symbol("eval");
    // A misspelled name is an error when the script is compiled, not a fault at the first
    // call that reaches it.
    engine.set_strict_variables(true);
    engine
        .set_module_resolver(ScriptsOnly { dir: limits.imports.then(|| dir.to_path_buf()), modules: modules.clone() });
    engine.on_print(|s| tracing::info!(target: "crmkit::script", "{s}"));
    engine.on_debug(|s, source, pos| {
        tracing::debug!(target: "crmkit::script", script = source.unwrap_or("?"), line = pos.line().unwrap_or(0), "{s}")
    });
    let stop = stopping.clone();
    engine.on_progress(move |_| {
        let ops = TICKS.with(|t| {
            t.set(t.get() + 1);
            t.get()
        });
        if ops > LIMIT.with(Cell::get) {
            return Some(OUT_OF_OPERATIONS.into());
        }
        // The clock and the program's stop are looked at every 256 operations: often enough
        // to stop within a fraction of a millisecond, rarely enough to cost a short call
        // nothing.
        if ops & 255 == 0 {
            let b = BUDGET.with(Cell::get);
            if b.stoppable && stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Some(STOPPING.into());
            }
            if b.deadline.is_some_and(|d| Instant::now() >= d) {
                return Some(OUT_OF_TIME.into());
            }
        }
        None
    });
    crate::api::register(&mut engine);
    engine
}

/// Where a traced call was last: the file (as its AST names it), the position and the
/// function.
#[derive(Clone)]
struct Place {
    source: Option<String>,
    pos: Position,
    function: Option<String>,
}

thread_local! {
    /// The last step of the traced call on this thread.
    static TRACE: std::cell::RefCell<Option<Place>> = const { std::cell::RefCell::new(None) };
}

/// The longest a traced call runs again to find where a call out of time was stopped.
const TRACE_TIME: std::time::Duration = std::time::Duration::from_millis(250);

/// Whether `e` is a limit stopping a call: the engine reports those without their place.
fn is_limit(e: &EvalAltResult) -> bool {
    match e {
        EvalAltResult::ErrorTerminated(why, _) => why.to_string() != STOPPING,
        EvalAltResult::ErrorStackOverflow(_)
        | EvalAltResult::ErrorDataTooLarge(..)
        | EvalAltResult::ErrorTooManyOperations(_) => true,
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => is_limit(inner),
        _ => false,
    }
}

impl ScriptHost {
    /// A host for the scripts in `dir`, under `limits`. Nothing is compiled yet.
    pub fn new(dir: &Path, limits: &RhaiSettings) -> ScriptHost {
        let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let modules = Arc::new(RwLock::new(BTreeMap::new()));
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let engine = configured(limits, &canonical, &modules, &stopping);
        let mut tracer = configured(limits, &canonical, &modules, &stopping);
        // Rhai marks its debugger interface as one that may still change, with a
        // deprecation note; a change shows here when rhai is upgraded.
        #[allow(deprecated)]
        tracer.register_debugger(
            |_, debugger| debugger,
            |ctx, event, _node, source, pos| {
                use rhai::debugger::{DebuggerCommand, DebuggerEvent};
                // The steps only: leaving functions with the error comes after the place.
                if !matches!(event, DebuggerEvent::Step | DebuggerEvent::Start) {
                    return Ok(DebuggerCommand::StepInto);
                }
                let function = ctx.global_runtime_state().debugger().call_stack().last().map(|f| f.fn_name.to_string());
                TRACE.with(|t| *t.borrow_mut() = Some(Place { source: source.map(str::to_string), pos, function }));
                Ok(DebuggerCommand::StepInto)
            },
        );
        ScriptHost {
            engine,
            tracer,
            dir: dir.to_path_buf(),
            limits: limits.clone(),
            scripts: RwLock::new(BTreeMap::new()),
            modules,
            watch: None,
            looked: std::sync::Mutex::new(None),
            stopping,
        }
    }

    /// Makes calls look for changed script files at most every `interval` and recompile
    /// them: a long-running program picks up a consultant's edit without a restart, and
    /// keeps the old version of a script while the new one does not compile.
    pub fn watch(mut self, interval: std::time::Duration) -> ScriptHost {
        self.watch = Some(interval);
        self
    }

    fn look_for_changes(&self) {
        let Some(interval) = self.watch else { return };
        {
            let mut looked = self.looked.lock().unwrap_or_else(|p| p.into_inner());
            if looked.is_some_and(|t| t.elapsed() < interval) {
                return;
            }
            *looked = Some(Instant::now());
        }
        for e in self.reload_changed() {
            tracing::warn!(target: "crmkit::script", "{e}; the last version that compiled stays in use");
        }
    }

    /// Ends the reports running now at their next operation, and every report after (a
    /// program that stops does not wait out a long report). Hook calls are not affected.
    pub fn stop_reports(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The limits the host was made with.
    pub fn limits(&self) -> &RhaiSettings {
        &self.limits
    }

    /// The folder the scripts are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every `.rhai` file below the folder, as names relative to it, sorted.
    pub fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else if p.extension().is_some_and(|x| x == "rhai") {
                    if let Ok(rel) = p.strip_prefix(base) {
                        out.push(rel.to_string_lossy().replace('\\', "/"));
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir, &self.dir, &mut out);
        out.sort();
        out
    }

    /// Compiles every script; returns the errors (the scripts that compile are kept).
    pub fn load_all(&self) -> Vec<ScriptError> {
        self.files().iter().filter_map(|f| self.load(f).err()).collect()
    }

    /// Compiles the scripts whose files changed since they were compiled (and new ones).
    /// A script that no longer compiles keeps its last good version; its error is returned.
    pub fn reload_changed(&self) -> Vec<ScriptError> {
        let mut errors = Vec::new();
        for f in self.files() {
            let modified = std::fs::metadata(self.dir.join(&f)).and_then(|m| m.modified()).ok();
            let current = self.scripts.read().expect("not poisoned").get(&f).map(|c| c.modified);
            if current.is_none_or(|m| m != modified || m.is_none()) {
                // An imported module may be the file that changed.
                self.modules.write().unwrap_or_else(|p| p.into_inner()).clear();
                if let Err(e) = self.load(&f) {
                    errors.push(e);
                }
            }
        }
        errors
    }

    /// Compiles one script (a name relative to the folder) and keeps it.
    pub fn load(&self, file: &str) -> Result<Arc<AST>, ScriptError> {
        let path = self.dir.join(file);
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ScriptError::at(file, Position::NONE, None, format!("cannot be read: {e}")))?;
        let mut ast = self.compile(file, &text)?;
        ast.set_source(file);
        let ast = Arc::new(ast);
        let reads_store = crate::api::may_read_store(&text);
        let compiled = Compiled { ast: ast.clone(), modified, reads_store };
        self.scripts.write().expect("not poisoned").insert(file.to_string(), compiled);
        Ok(ast)
    }

    /// Compiles the text of `file`; errors name the line and column.
    fn compile(&self, file: &str, text: &str) -> Result<AST, ScriptError> {
        self.engine.compile(text).map_err(|e| {
            let message = match e.err_type().to_string() {
                m if m.contains("'eval'") => {
                    "eval is not available to scripts: they run only the code of their files".to_string()
                }
                m if matches!(e.err_type(), rhai::ParseErrorType::VariableUndefined(_)) => format!(
                    "{}: a function sees only its parameters (ctx) and what it declares with let or const \
                     before; constants of the file's top level are not visible in functions",
                    m.split(" (line").next().unwrap_or(&m)
                ),
                m => m,
            };
            ScriptError::at(file, e.position(), None, message)
        })
    }

    /// Every script file as it is on disk now: whether it compiles (its error if not),
    /// whether a compiled version is in use, and the functions it defines. Nothing is
    /// recompiled for use.
    pub fn status(&self) -> Vec<ScriptStatus> {
        let scripts = self.scripts.read().expect("not poisoned");
        self.files()
            .into_iter()
            .map(|file| {
                let compiled = std::fs::read_to_string(self.dir.join(&file))
                    .map_err(|e| ScriptError::at(&file, Position::NONE, None, format!("cannot be read: {e}")))
                    .and_then(|text| self.compile(&file, &text));
                let in_use = scripts.get(&file);
                let functions = match (&compiled, in_use) {
                    (Ok(ast), _) => ast.iter_functions().map(|f| format!("{}/{}", f.name, f.params.len())).collect(),
                    (Err(_), Some(c)) => {
                        c.ast.iter_functions().map(|f| format!("{}/{}", f.name, f.params.len())).collect()
                    }
                    (Err(_), None) => Vec::new(),
                };
                ScriptStatus { in_use: in_use.is_some(), error: compiled.err().map(|e| e.to_string()), functions, file }
            })
            .collect()
    }

    /// The compiled script, compiling it on first use.
    fn script(&self, file: &str) -> Result<Arc<AST>, ScriptError> {
        Ok(self.compiled(file)?.0)
    }

    /// The compiled script and whether it may read the store, as one version.
    fn compiled(&self, file: &str) -> Result<(Arc<AST>, bool), ScriptError> {
        self.look_for_changes();
        if let Some(c) = self.scripts.read().expect("not poisoned").get(file) {
            return Ok((c.ast.clone(), c.reads_store));
        }
        self.load(file)?;
        let scripts = self.scripts.read().expect("not poisoned");
        let c = scripts.get(file).expect("just loaded");
        Ok((c.ast.clone(), c.reads_store))
    }

    /// Checks that `file` defines `function` taking `arity` parameters.
    pub fn check_function(&self, file: &str, function: &str, arity: usize) -> Result<(), ScriptError> {
        let ast = self.script(file)?;
        let found: Vec<usize> = ast.iter_functions().filter(|f| f.name == function).map(|f| f.params.len()).collect();
        if found.contains(&arity) {
            return Ok(());
        }
        let message = if found.is_empty() {
            let mut defined: Vec<String> =
                ast.iter_functions().map(|f| format!("{}({})", f.name, f.params.join(", "))).collect();
            defined.sort();
            format!(
                "defines no function {function}; it defines {}",
                if defined.is_empty() { "none".to_string() } else { defined.join(", ") }
            )
        } else {
            format!("{function} takes {} parameter(s); a hook handler takes {arity} (ctx)", found[0])
        };
        Err(ScriptError::at(file, Position::NONE, Some(function), message))
    }

    /// Calls `function` of `file` with `args` under the limits, the store functions of the
    /// script reading `view`. A script that reads the store runs on a helper thread while
    /// this one answers its reads, so that `view` (a write transaction, say) never leaves
    /// the thread that holds it.
    pub fn call_with(
        &self,
        view: &dyn View,
        file: &str,
        function: &str,
        args: Vec<Dynamic>,
        limits: CallLimits,
    ) -> Result<Dynamic, ScriptError> {
        self.call_on(view, file, function, args, limits, false)
    }

    /// [`ScriptHost::call_with`] for a report: ended by [`ScriptHost::stop_reports`].
    pub fn call_report(
        &self,
        view: &dyn View,
        file: &str,
        function: &str,
        args: Vec<Dynamic>,
        limits: CallLimits,
    ) -> Result<Dynamic, ScriptError> {
        self.call_on(view, file, function, args, limits, true)
    }

    fn call_on(
        &self,
        view: &dyn View,
        file: &str,
        function: &str,
        args: Vec<Dynamic>,
        limits: CallLimits,
        stoppable: bool,
    ) -> Result<Dynamic, ScriptError> {
        let (ast, reads_store) = self.compiled(file)?;
        if !reads_store {
            return self.run(file, &ast, function, args, limits, stoppable);
        }
        std::thread::scope(|scope| {
            let (ask, asked) = std::sync::mpsc::channel::<crate::api::Ask>();
            let (reply, replies) = std::sync::mpsc::channel::<crate::api::ReadReply>();
            let script = scope.spawn(move || {
                crate::api::connect(Some((ask, replies)));
                let result = self.run(file, &ast, function, args, limits, stoppable);
                crate::api::connect(None);
                result
            });
            // The channel closes when the script's thread lets go of its end.
            for question in asked {
                // A store that panics answers with an error; the script's thread never waits
                // for an answer that does not come.
                let answer =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::api::answer_read(view, question)))
                        .unwrap_or_else(|_| Err("the store failed while reading (a panic)".to_string()));
                if reply.send(answer).is_err() {
                    break;
                }
            }
            script.join().unwrap_or_else(|_| {
                Err(ScriptError::at(file, Position::NONE, Some(function), "the script's thread panicked"))
            })
        })
    }

    /// Calls `function` of `file` with `args` under the installation's limits, changed by
    /// `limits`; the script cannot read the store.
    pub fn call(
        &self,
        file: &str,
        function: &str,
        args: Vec<Dynamic>,
        limits: CallLimits,
    ) -> Result<Dynamic, ScriptError> {
        let ast = self.script(file)?;
        self.run(file, &ast, function, args, limits, false)
    }

    fn run(
        &self,
        file: &str,
        ast: &AST,
        function: &str,
        args: Vec<Dynamic>,
        limits: CallLimits,
        stoppable: bool,
    ) -> Result<Dynamic, ScriptError> {
        let timeout_ms = limits.timeout_ms.unwrap_or(self.limits.timeout_ms);
        let budget = Budget {
            deadline: Some(Instant::now() + std::time::Duration::from_millis(timeout_ms)),
            max_operations: limits.max_operations.unwrap_or(self.limits.max_operations),
            timeout_ms,
            stoppable,
        };
        let outer = BUDGET.with(|b| b.replace(budget));
        let outer_limit = LIMIT.with(|l| l.replace(budget.max_operations));
        let outer_ticks = TICKS.with(|t| t.replace(0));
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        let again = args.clone();
        let result = self.engine.call_fn_with_options::<Dynamic>(options, &mut Scope::new(), ast, function, args);
        let place = match &result {
            Err(e) if is_limit(e) => self.trace(ast, function, again, budget),
            _ => None,
        };
        BUDGET.with(|b| b.set(outer));
        LIMIT.with(|l| l.set(outer_limit));
        TICKS.with(|t| t.set(outer_ticks));
        result.map_err(|e| call_error(file, function, *e, budget, place))
    }

    /// Runs a call that a limit stopped again, stepping, under the same budget (a time limit:
    /// at most [`TRACE_TIME`]); where it was when it stopped.
    fn trace(&self, ast: &AST, function: &str, args: Vec<Dynamic>, budget: Budget) -> Option<Place> {
        let time = std::time::Duration::from_millis(budget.timeout_ms).min(TRACE_TIME);
        BUDGET.with(|b| b.set(Budget { deadline: Some(Instant::now() + time), ..budget }));
        TICKS.with(|t| t.set(0));
        TRACE.with(|t| t.borrow_mut().take());
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        let _ = self.tracer.call_fn_with_options::<Dynamic>(options, &mut Scope::new(), ast, function, args);
        TRACE.with(|t| t.borrow_mut().take())
    }
}

/// A failed call as a [`ScriptError`]: the innermost error, where it happened.
fn call_error(file: &str, function: &str, e: EvalAltResult, budget: Budget, place: Option<Place>) -> ScriptError {
    let mut err = e;
    let mut inner_fn = function.to_string();
    let mut inner_file = file.to_string();
    while let EvalAltResult::ErrorInFunctionCall(name, source, inner, _) = err {
        inner_fn = name;
        if !source.is_empty() {
            inner_file = source;
        }
        err = *inner;
    }
    let file = inner_file.as_str();
    let pos = err.position();
    let message = match &err {
        EvalAltResult::ErrorTerminated(why, _) if why.to_string() == OUT_OF_TIME => {
            format!("stopped after {} ms, the limit (limits.timeout_ms or the binding's timeout_ms)", budget.timeout_ms)
        }
        EvalAltResult::ErrorTerminated(why, _) if why.to_string() == OUT_OF_OPERATIONS => format!(
            "stopped after {} operations, the limit (runtimes.rhai.max_operations or the binding's max_operations)",
            budget.max_operations
        ),
        EvalAltResult::ErrorTerminated(why, _) if why.to_string() == STOPPING => {
            "stopped: the program is shutting down".to_string()
        }
        EvalAltResult::ErrorStackOverflow(_) => {
            "calls nested too deep (runtimes.rhai.max_call_depth): runaway recursion?".to_string()
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            let (what, key) = match what.as_str() {
                w if w.starts_with("Length of string") => ("a string", "runtimes.rhai.max_string_size"),
                w if w.starts_with("Size of array") => ("an array", "runtimes.rhai.max_array_size"),
                w if w.starts_with("Size of object map") => ("an object map", "runtimes.rhai.max_map_size"),
                _ => ("a value", "runtimes.rhai.max_string_size, max_array_size, max_map_size"),
            };
            format!("{what} grew past its limit ({key})")
        }
        EvalAltResult::ErrorFunctionNotFound(sig, _) if sig.starts_with(function) && inner_fn == function => {
            format!("defines no function {sig}")
        }
        other => other.to_string(),
    };
    match place {
        // Where the traced run was stopped, when the engine did not say.
        Some(p) if pos.is_none() => {
            let file = p.source.as_deref().unwrap_or(file);
            ScriptError::at(file, p.pos, Some(p.function.as_deref().unwrap_or(&inner_fn)), message)
        }
        _ => ScriptError::at(file, pos, Some(&inner_fn), message),
    }
}

fn split_handler(name: &str) -> Option<(&str, &str)> {
    let (file, function) = name.rsplit_once("::")?;
    (file.ends_with(".rhai") && !function.is_empty()).then_some((file, function))
}

/// A hook handler that is a script function.
pub struct ScriptHandler {
    host: Arc<ScriptHost>,
    file: String,
    function: String,
    limits: CallLimits,
}

impl ScriptHandler {
    /// The handler `file::function`, called under `limits`.
    pub fn new(host: Arc<ScriptHost>, file: &str, function: &str, limits: CallLimits) -> Self {
        ScriptHandler { host, file: file.to_string(), function: function.to_string(), limits }
    }
}

impl Handler for ScriptHandler {
    fn call(&self, input: &HookInput<'_>) -> Result<Reply, Fault> {
        let ctx = crate::api::context(input).map_err(|e| Fault(format!("the hook's input: {e}")))?;
        let value = self
            .host
            .call_with(input.view, &self.file, &self.function, vec![ctx], self.limits)
            .map_err(|e| Fault(e.to_string()))?;
        crate::api::reply(value)
            .map_err(|m| Fault(ScriptError::at(&self.file, Position::NONE, Some(&self.function), m).to_string()))
    }
}

/// The Rhai runtime as the engine finds it: bindings whose runtime is `rhai` name a script
/// function as `FILE::FUNCTION`, the file relative to `scripts/`.
pub struct RhaiProvider {
    host: Arc<ScriptHost>,
}

impl RhaiProvider {
    /// The provider of the functions of `host`'s scripts.
    pub fn new(host: Arc<ScriptHost>) -> RhaiProvider {
        RhaiProvider { host }
    }
}

/// The runtime name bindings use for Rhai scripts.
pub const RUNTIME: &str = "rhai";

impl HandlerProvider for RhaiProvider {
    fn runtime(&self) -> &str {
        RUNTIME
    }

    fn handler(&self, binding: &HookBinding) -> Result<Arc<dyn Handler>, String> {
        let (file, function) = split_handler(&binding.handler)
            .ok_or("a script function is named FILE.rhai::FUNCTION, the file relative to scripts/")?;
        self.host.check_function(file, function, 1).map_err(|e| e.to_string())?;
        Ok(Arc::new(ScriptHandler::new(self.host.clone(), file, function, binding.limits)))
    }
}
