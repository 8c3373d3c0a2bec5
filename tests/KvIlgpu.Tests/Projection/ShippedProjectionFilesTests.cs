using KvIlgpu.Models.Loading;
using KvIlgpu.Projection;

namespace KvIlgpu.Tests.Projection;

/// <summary>What ships under weights/ reads back: every model's projection files fit that model (layers, KV heads,
/// head_dim, orthogonal bases, ranks in range), the searched ones keep the budget they were searched at, and every
/// projection training config in the model folders loads.</summary>
public class ShippedProjectionFilesTests
{
    private static readonly DirectoryInfo Root = FindRoot();

    [Theory]
    [InlineData("default")]
    [InlineData("head16")]
    public void Every_shipped_projection_file_fits_its_model(string model)
    {
        string folder = Path.Combine(Root.FullName, "weights", model);
        var config = ModelLoader.Load(folder).Config;
        var files = Directory.GetFiles(folder, "kv-projection*.safetensors");
        Assert.Contains(files, f => Path.GetFileName(f) == "kv-projection.safetensors");
        Assert.Contains(files, f => Path.GetFileName(f) == "kv-projection-pca.safetensors");
        foreach (var file in files)
        {
            var projection = KvProjectionFile.Load(file, config);
            Assert.Equal(config.HeadDim, projection.HeadDim);
            // A file with its ranks searched at half the dims keeps exactly that share; the others are at full rank.
            bool searched = Path.GetFileNameWithoutExtension(file) is "kv-projection" or "kv-projection-text-searched";
            Assert.True(projection.KeptFraction == (searched ? 0.5 : 1.0), $"{file}: kept fraction {projection.KeptFraction}");
        }
    }

    [Theory]
    [InlineData("default-train")]
    [InlineData("head16-train")]
    public void Every_projection_training_config_loads(string folder)
    {
        var configs = Directory.GetFiles(Path.Combine(Root.FullName, "weights", folder), "kv-projection*.json");
        Assert.NotEmpty(configs);
        foreach (var path in configs) ProjectionTrainingConfig.Load(path);
    }

    private static DirectoryInfo FindRoot()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(Path.Combine(root.FullName, "KvIlgpu.sln"))) root = root.Parent!;
        return root;
    }
}
