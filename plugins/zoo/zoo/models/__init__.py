"""One module per published model family; each registers its methods when imported (``zoo.plugin``)."""
