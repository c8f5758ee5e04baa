"""The pure core: site files, resources, the job plan, rendering."""
