"""What trains and then reports: the confirmation of a study's best over seeds, and the main job from search to verdict."""
