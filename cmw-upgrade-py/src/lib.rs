//! Python bindings of cmw-upgrade: the module `cmw_upgrade`.
//!
//! Thin on purpose: each function converts arguments, calls the core, and wraps
//! the result in a small frozen class or plain data; every decision lives in
//! `cmw-upgrade-core`. Errors become a `CmwUpgradeError` subclass named after the
//! core's error kind ([`errors`]). Long calls run through [`long_call`], which
//! reports progress and lets Ctrl-C stop the work at a safe point.
//!
//! By area: [`detect`] (OS family, instance names, layout), [`logs`] (verdict,
//! log watcher, script output), [`backup`] (bundles, cache pruning), [`config`]
//! (config migration), [`procedure`] (plan and run; the whole upgrade from a
//! control point).

mod admin;
mod backup;
mod config;
mod convert;
mod detect;
mod errors;
mod logs;
mod long_call;
mod procedure;

use cmw_upgrade_core as core;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The Python module `cmw_upgrade`.
#[pymodule]
fn cmw_upgrade(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", core::VERSION)?;
    errors::register_exceptions(module)?;
    module.add_class::<detect::PyOwner>()?;
    module.add_class::<detect::PyOsInfo>()?;
    module.add_class::<detect::PyInstanceLayout>()?;
    module.add_class::<backup::PyPruneReport>()?;
    module.add_class::<logs::PyLogError>()?;
    module.add_class::<logs::PyUpgradeVerdict>()?;
    module.add_class::<logs::PyLogWatcher>()?;
    module.add_class::<logs::PyInstanceCreateReport>()?;
    module.add_function(wrap_pyfunction!(detect::detect_os_family, module)?)?;
    module.add_function(wrap_pyfunction!(detect::validate_instance_name, module)?)?;
    module.add_function(wrap_pyfunction!(backup::prune_caches, module)?)?;
    module.add_function(wrap_pyfunction!(logs::upgrade_verdict, module)?)?;
    module.add_function(wrap_pyfunction!(
        logs::parse_instance_create_output,
        module
    )?)?;
    module.add_function(wrap_pyfunction!(logs::parse_version_list, module)?)?;
    module.add_function(wrap_pyfunction!(config::migrate_config, module)?)?;
    module.add_function(wrap_pyfunction!(logs::parse_prerequisites_list, module)?)?;
    module.add_function(wrap_pyfunction!(backup::backup, module)?)?;
    module.add_function(wrap_pyfunction!(backup::verify_bundle, module)?)?;
    module.add_function(wrap_pyfunction!(backup::bundle_drift, module)?)?;
    module.add_function(wrap_pyfunction!(backup::restore_bundle, module)?)?;
    module.add_function(wrap_pyfunction!(backup::import_cdbbz, module)?)?;
    module.add_function(wrap_pyfunction!(procedure::plan, module)?)?;
    module.add_function(wrap_pyfunction!(procedure::run, module)?)?;
    module.add_function(wrap_pyfunction!(procedure::upgrade, module)?)?;
    module.add_function(wrap_pyfunction!(admin::status, module)?)?;
    module.add_function(wrap_pyfunction!(admin::rollback, module)?)?;
    module.add_function(wrap_pyfunction!(admin::instances, module)?)?;
    module.add_function(wrap_pyfunction!(admin::check, module)?)?;
    // Families, for callers that want to iterate them.
    let families = PyDict::new(module.py());
    for family in core::OsFamily::ALL {
        families.set_item(family.as_str(), family.nginx_site_dir())?;
    }
    module.add("NGINX_SITE_DIRS", families)?;
    add_types(module)?;
    // Every public name, so `from cmw_upgrade import *` and the stub agree.
    let mut public: Vec<String> = module
        .dict()
        .keys()
        .iter()
        .map(|name| name.extract::<String>())
        .collect::<PyResult<_>>()?;
    public.retain(|name| !name.starts_with('_'));
    // The package re-exports the module with `import *`, which takes only
    // what __all__ names: the version too.
    public.push("__version__".to_owned());
    public.sort();
    module.add("__all__", public)?;
    Ok(())
}

/// The TypedDicts of the results (`types.py`, the same as in the stub),
/// made at import so that they exist at run time too.
fn add_types(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let source = std::ffi::CString::new(include_str!("types.py"))
        .map_err(|error| pyo3::exceptions::PyRuntimeError::new_err(error.to_string()))?;
    let namespace = PyDict::new(py);
    // The classes say they belong to cmw_upgrade, as the stub declares them.
    namespace.set_item("__name__", "cmw_upgrade")?;
    py.run(&source, Some(&namespace), None)?;
    let names = namespace
        .get_item("TYPE_NAMES")?
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("types.py lacks TYPE_NAMES"))?;
    for name in names.extract::<Vec<String>>()? {
        let value = namespace.get_item(&name)?.ok_or_else(|| {
            pyo3::exceptions::PyRuntimeError::new_err(format!("types.py lacks {name}"))
        })?;
        module.add(name.as_str(), value)?;
    }
    Ok(())
}
