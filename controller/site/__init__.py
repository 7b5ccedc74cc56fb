"""The site as the controller sees it: readings and charger statuses folded into a snapshot."""
