"""papers-language: see the package README for the papers it implements."""
