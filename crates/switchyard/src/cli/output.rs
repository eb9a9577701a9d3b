//! Output of the read commands: `--json` prints the API's answer as it came (and
//! nothing else on stdout); otherwise aligned tables and `key: value` lines.

use super::style::{Styles, color_for};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::io::Write as _;

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

pub fn styles() -> Styles {
    Styles::new(color_for(&std::io::stdout()))
}

/// A table: a header row and rows of cells, columns padded to their widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn print(&self) -> anyhow::Result<()> {
        let s = styles();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = std::io::stdout().lock();
        let line = |cells: &[String]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            text
        };
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        writeln!(out, "{}{}{:#}", s.bold, line(&header), s.bold)?;
        for row in &self.rows {
            writeln!(out, "{}", line(row).trim_end())?;
        }
        Ok(())
    }
}

/// `key: value` lines, keys padded; `None` values are left out.
pub fn fields(pairs: &[(&str, Option<String>)]) -> anyhow::Result<()> {
    let s = styles();
    let width = pairs
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for (key, value) in pairs {
        if let Some(value) = value {
            let pad = " ".repeat(width - key.chars().count());
            writeln!(out, "{}{key}:{:#}{pad} {value}", s.bold, s.bold)?;
        }
    }
    Ok(())
}

pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `-` for an absent cell.
pub fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}
