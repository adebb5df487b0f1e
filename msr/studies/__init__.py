"""Studies: turning the output folders of multiruns into tables (`aggregate`)."""
