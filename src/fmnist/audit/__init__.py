"""What is wrong with the data set itself: duplicates, class balance, pixel statistics, likely label errors."""
