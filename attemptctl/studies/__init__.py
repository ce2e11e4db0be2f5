"""Studies over registered prompts: one module for every ``study`` command.

- ``study sources`` (the paper's Figure 5): a target evaluated with its sources added one at a time.
- ``study methods`` (the paper's Table 2 and Table 4 ablations): every method trained on every
  target at one budget, each cell (method × target × seed × shots) a registered target version
  tagged ``config["study"] = {"name", "method", "target", "seed", "shots"}`` and evaluated on test,
  so a study resumes cell by cell and ``study show`` rebuilds the table from the registry alone.
  Each cell keeps its per-row test answers, so the table gives every method's difference from PT
  as a paired bootstrap interval (``differences``, ``intervals``).

Torch-free at import: the training and evaluation code is imported inside the functions that need
it, so reading a study back from the registry never loads torch.
"""

from attemptctl.studies.cells import (
                                      ATTENTION_METHODS,
                                      BUDGET_KEYS,
                                      METHODS,
                                      SCALED_OPTIONS,
                                      TARGET_COLUMN,
                                      UNCOMPARED_OPTIONS,
                                      UNIFORM_SAMPLING,
                                      Cell,
                                      MethodsStudyConfig,
                                      default_name,
                                      finished_cells,
                                      stored_attention,
                                      study_names,
                                      study_records,
)
from attemptctl.studies.differences import DifferenceRow, difference_note, difference_rows, differences
from attemptctl.studies.export import (
                                      check_export,
                                      read_export,
                                      table_csv,
                                      table_json,
                                      table_markdown,
                                      table_rows,
                                      write_export,
)
from attemptctl.studies.methods import MethodsStudyResult, OnCell, run_options, study_methods
from attemptctl.studies.sources import StudyRow, study_sources
from attemptctl.studies.table import (
                                      CellResult,
                                      MethodsTable,
                                      Summary,
                                      curve_panels,
                                      in_order,
                                      methods_table,
                                      show_study,
                                      table_from_exports,
)

__all__ = ["ATTENTION_METHODS", "BUDGET_KEYS", "METHODS", "SCALED_OPTIONS", "TARGET_COLUMN", "UNCOMPARED_OPTIONS",
           "UNIFORM_SAMPLING", "Cell", "CellResult", "DifferenceRow", "MethodsStudyConfig", "MethodsStudyResult",
           "MethodsTable", "OnCell", "StudyRow", "Summary", "attention_markdown", "check_export", "curve_panels",
           "default_name", "difference_note", "difference_rows", "differences", "finished_cells", "in_order",
           "methods_table", "read_export", "run_options", "show_study", "stored_attention", "study_methods",
           "study_names", "study_records", "study_sources", "table_csv", "table_from_exports", "table_json",
           "table_markdown", "table_rows", "write_export"]
