using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using KvIlgpu.Evaluation;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Models.Saving;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Training;

/// <summary>Where training stands, for progress display.</summary>
public sealed record TrainingProgress(string Stage, int Step, int Steps, float Loss, float? ValidationLoss, double TokensPerSecond,
    float LearningRate);
