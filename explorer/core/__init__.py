"""The torch core: model, adapters, analysis, budgets. Imports torch and numpy only, never Qt."""
