//! Plain Python data (dict, list, str, int, float, bool, None) from any core
//! result, through its serde form: the same shape the CLI prints with --json;
//! and paths as text. Every string passes the core's secret masking.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3::IntoPyObjectExt;
use serde::Serialize;
use serde_json::Value;

/// A path as Python text; a name that is not UTF-8 gets replacement characters.
pub fn path_text(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Converts a serializable value into plain Python data.
pub fn to_python<'py, T: Serialize>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    let value = serde_json::to_value(value)
        .map_err(|error| PyValueError::new_err(format!("cannot convert the result: {error}")))?;
    json_to_python(py, &value)
}

fn json_to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    match value {
        Value::Null => Ok(py.None().into_bound(py)),
        Value::Bool(flag) => flag.into_bound_py_any(py),
        Value::Number(number) => {
            if let Some(integer) = number.as_u64() {
                integer.into_bound_py_any(py)
            } else if let Some(integer) = number.as_i64() {
                integer.into_bound_py_any(py)
            } else {
                number.as_f64().unwrap_or(f64::NAN).into_bound_py_any(py)
            }
        }
        // The one masking function: no secret read from a config reaches Python.
        Value::String(text) => cmw_upgrade_core::secrets::mask(text).into_bound_py_any(py),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_python(py, item)?)?;
            }
            Ok(list.into_any())
        }
        Value::Object(fields) => {
            let dict = PyDict::new(py);
            for (key, item) in fields {
                dict.set_item(key, json_to_python(py, item)?)?;
            }
            Ok(dict.into_any())
        }
    }
}

/// A server path the caller gave as `str` or `os.PathLike`, as the text the
/// procedure records and sends to a server (which must be UTF-8).
pub fn server_path_text(argument: &str, path: std::path::PathBuf) -> PyResult<String> {
    path.into_os_string().into_string().map_err(|path| {
        crate::errors::core_error(cmw_upgrade_core::Error::BadInput {
            details: format!(
                "{argument}={}: not valid UTF-8; give the path as text",
                path.to_string_lossy()
            ),
        })
    })
}

/// A path for the server under `root`, placed as the CLI places its
/// arguments under `--root` (as given under `/`).
pub fn under_root_arg(
    root: &std::path::Path,
    path: &std::path::Path,
    argument: &str,
) -> PyResult<std::path::PathBuf> {
    cmw_upgrade_core::paths::server_path_argument(root, path, argument)
        .map_err(crate::errors::core_error)
}
