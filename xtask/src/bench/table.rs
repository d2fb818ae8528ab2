//! Markdown tables as the bench prints them: a title line, a dash line, then rows.

/// A table's columns and how its rows are laid out.
pub struct Table {
    titles: Vec<String>,
    widths: Vec<usize>,
    /// Pad cells to their column's width (first column left, the rest right-aligned).
    pad: bool,
}

impl Table {
    /// Columns of fixed widths (in chars): titles and cells are padded to them, so the
    /// plain text lines up; a longer cell overflows its column rather than being cut.
    pub fn aligned<S: AsRef<str>>(columns: &[(S, usize)]) -> Self {
        Self {
            titles: columns.iter().map(|(t, _)| t.as_ref().to_owned()).collect(),
            widths: columns.iter().map(|&(_, w)| w).collect(),
            pad: true,
        }
    }

    /// Columns as wide as their titles, cells printed as they come.
    pub fn compact(titles: &[&str]) -> Self {
        Self {
            titles: titles.iter().map(|&t| t.to_owned()).collect(),
            widths: titles.iter().map(|t| t.chars().count()).collect(),
            pad: false,
        }
    }

    /// The title line and the dash line under it.
    pub fn header(&self) -> String {
        let titles: Vec<String> = self
            .titles
            .iter()
            .zip(&self.widths)
            .map(|(t, &w)| format!("{t:<w$}"))
            .collect();
        let dashes: Vec<String> = self.widths.iter().map(|&w| "-".repeat(w + 2)).collect();
        format!("| {} |\n|{}|", titles.join(" | "), dashes.join("|"))
    }

    /// One row; `cells` in column order.
    pub fn row<S: AsRef<str>>(&self, cells: &[S]) -> String {
        let cells: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| self.cell(i, c.as_ref()))
            .collect();
        format!("| {} |", cells.join(" | "))
    }

    /// A row with its first cell, then `text` as one cell across the rest (a monitor
    /// that did not run, and why).
    pub fn spanning_row(&self, first: &str, text: &str) -> String {
        format!("| {} | {text} |", self.cell(0, first))
    }

    fn cell(&self, column: usize, text: &str) -> String {
        let w = self.widths.get(column).copied().unwrap_or(0);
        match (self.pad, column) {
            (false, _) => text.to_owned(),
            (true, 0) => format!("{text:<w$}"),
            (true, _) => format!("{text:>w$}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn aligned_cells_pad_to_the_column_width_and_overflow_it() {
        let t = Table::aligned(&[("name", 6), ("µs", 5), ("% core @10,000/s", 15)]);
        assert_eq!(
            t.header(),
            "| name   | µs    | % core @10,000/s |\n|--------|-------|-----------------|"
        );
        assert_eq!(
            t.row(&["ab", "1.5", "12.34%"]),
            "| ab     |   1.5 |          12.34% |"
        );
        assert_eq!(
            t.row(&["toolong", "123456", ""]),
            "| toolong | 123456 |                 |"
        );
        assert_eq!(
            t.spanning_row("ab", "not run: why"),
            "| ab     | not run: why |"
        );
    }

    #[test]
    fn compact_cells_are_printed_as_they_come() {
        let t = Table::compact(&["phase", "alive"]);
        assert_eq!(t.header(), "| phase | alive |\n|-------|-------|");
        assert_eq!(t.row(&["max 60 s", "yes"]), "| max 60 s | yes |");
    }
}
